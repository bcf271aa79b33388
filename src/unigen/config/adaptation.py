"""The settings of ``unigen adapt`` (:class:`AdaptConfig`, the ``adapt`` section; docs/adapt.md). No stage
of ``unigen run`` reads them, so they change no fingerprint of its stages."""

from __future__ import annotations

from dataclasses import dataclass

from unigen.config.fields import _check, _one_of, setting

#: the label-free estimates of a domain's class prior ``unigen adapt`` can use (unigen.adaptation.priors)
ADAPT_PRIORS = ("agreement", "lm", "model_em", "balanced", "none")
#: where ``unigen adapt``'s pseudo-labels come from (unigen.adaptation.pseudo_labels)
ADAPT_PSEUDO_LABELS = ("agreement", "confidence", "model", "lm")


@dataclass(frozen=True)
class AdaptConfig:
    """``unigen adapt``: a task model adapted to unlabeled texts (docs/adapt.md; provisional defaults).

    The defaults are provisional until measured with experiments/adapt_protocol.py (results/adapt.md)."""

    method: str = setting(
        "self_train", "prior: only move the decision threshold to the estimated class prior | self_train: "
        "fine-tune on pseudo-labels (in the prior's proportions) mixed with the model's synthetic rows, then "
        "move the threshold if adapt.prior is set | distill: train a new, smaller model (adapt.student) on "
        "the (threshold-moved) model's probabilities for the texts")
    prior: str | None = setting(
        None, "label-free class-prior estimate the threshold moves to: agreement (the LM's and the task "
        "model's labels where they agree) | lm (the calibrated verbalizer's predicted share) | model_em (EM "
        "on the task model's probabilities, Saerens et al. 2002) | balanced (uniform) | none (keep the "
        "model's threshold); None: agreement for method prior, none for self_train and distill "
        "(results/adapt.md: on the one-prompt model self-training that keeps the model's threshold gained "
        "+3.0 on the seven sets, with the agreement prior +0.4)")
    pseudo_labels: str = setting("agreement", "self_train: pseudo-labels from agreement (texts the LM and "
                                 "the prior-shifted task model label alike) | confidence (their averaged "
                                 "probabilities) | model | lm")
    select_fraction: float = setting(0.5, "self_train: share of the labelled pool kept as pseudo-labels, the "
                                     "most confident per class, in the estimated prior's proportions")
    max_pseudo: int = setting(1000, "self_train: at most this many pseudo-labelled texts per round")
    rounds: int = setting(1, "self_train: pseudo-label and fine-tune this many times")
    epochs: int | None = setting(None, "epochs per self_train round (None: 1) or of the distill student "
                                 "(None: train.epochs' default for its encoder, 3 for transformers)")
    student: str = setting("minilm-l6", "distill: the student's encoder (a train.tam name or path), or "
                           "teacher: the model being adapted with adapt.student_layers of its layers kept "
                           "(evenly spaced, the last included) and warm-started from its weights "
                           "(transformers only)")
    student_layers: int = setting(6, "distill with adapt.student=teacher: transformer layers the student "
                                  "keeps of the teacher's (at most as many as it has; MPNet-base has 12)",
                                  fingerprint="unless_default")
    max_distill: int = setting(10000, "distill: at most this many of the texts (a seeded sample) are "
                               "distilled on")
    lr: float | None = setting(None, "learning rate (None: 1e-4 for a distill student built fresh, else "
                               "train.lr's default, 1e-3 LSTM, 2e-5 transformers)")
    synthetic_ratio: float = setting(1.0, "self_train: synthetic training rows mixed in per pseudo-label "
                                     "(read from the model's training provenance when found; 0: none)")
    targets: str | None = setting(None, "training targets: hard (one-hot) | soft (the pseudo-labeler's, or "
                                  "for distill the teacher's, probabilities); None: hard for self_train, "
                                  "soft for distill")
    scl_weight: float = setting(0.0, "self_train: weight of the supervised contrastive loss (0: CE only)")
    max_length: int | None = setting(None, "token limit of the training inputs (None: 64 for self_train, "
                                     "128 for distill)")
    match_prior: bool = setting(True, "self_train: after fine-tuning, move the threshold to the estimated "
                                "prior again")
    labeler: str | None = setting(None, "the LM whose calibrated verbalizer labels texts (None: the "
                                  "generator named in the model's training record, else `generator`)")
    lm_sample: int = setting(2000, "texts (a seeded sample) the LM labels; 0: no LM (prior model_em, "
                             "balanced or none, pseudo_labels model)")
    min_texts: int = setting(50, "fewer usable texts than this is an error")
    em_temperature: float = setting(1.0, "model_em: the task model's logits are divided by this before EM "
                                    "(> 1 softens over-confident probabilities)")
    em_iterations: int = setting(100, "model_em: at most this many EM iterations")
    batch_size: int = setting(64, "texts per prediction batch", fingerprint=False)

    def resolved_prior(self) -> str:
        """``prior``, or agreement for ``method=prior`` (it only moves the threshold) and none for
        self_train and distill: the LM's share estimate is off by 7-17 points on four of the seven sets
        (SST-2, RT, Yelp, CR; results/adapt.md), and self-training with it gained +0.43 where keeping the
        model's own threshold gained +3.00."""
        if self.prior is not None:
            return self.prior
        return "agreement" if self.method == "prior" else "none"

    def resolved_targets(self) -> str:
        """``targets``, or hard for self_train and soft (the teacher's probabilities) for distill."""
        return self.targets or ("soft" if self.method == "distill" else "hard")

    def resolved_lr(self) -> float | None:
        """``lr``, or 1e-4 for a fresh distill student, else None (``train.lr``'s default). A MiniLM-L6
        student at 2e-5 underfitted its teacher's probabilities (results/fast_model.md: soft-label CE 0.10
        nats above the targets' entropy after three epochs); a warm start (``student=teacher``) keeps the
        fine-tuning rate."""
        if self.lr is not None:
            return self.lr
        return 1e-4 if self.method == "distill" and self.student != "teacher" else None

    def resolved_max_length(self) -> int:
        """``max_length``, or 128 for distill (the prediction limit: a student trained on 64 tokens called
        half as many long reviews positive as its teacher, results/fast_model.md), 64 for self_train."""
        return self.max_length or (128 if self.method == "distill" else 64)

    def sample_only(self) -> bool:
        """Whether the stage needs the task model on the LM's sample only: the LM labels texts and the
        pseudo-labels come from that sample (their pool), and so does the prior; the threshold move is a
        quantile of the model's margins, which 2,000 texts estimate to about 1% of the share. Not for
        distill (the student learns from every text) or ``pseudo_labels=model`` (the pool is every text).
        With 10,000 long reviews the model passes over every text would take most of the stage."""
        return self.needs_lm() and self.method != "distill" and self.pseudo_labels != "model"

    def needs_lm(self) -> bool:
        """Whether the LM labels texts (the prior or the pseudo-labels use it)."""
        return self.resolved_prior() in ("agreement", "lm") or (
            self.method == "self_train" and self.pseudo_labels != "model")

    def __post_init__(self) -> None:
        _one_of("adapt.method", self.method, ("prior", "self_train", "distill"))
        _check(self.prior is None or self.prior in ADAPT_PRIORS,
               f"adapt.prior must be one of {', '.join(ADAPT_PRIORS)} or None (got {self.prior!r})")
        _one_of("adapt.pseudo_labels", self.pseudo_labels, ADAPT_PSEUDO_LABELS)
        _check(self.targets is None or self.targets in ("hard", "soft"),
               f"adapt.targets must be hard, soft or None (got {self.targets!r})")
        _check(0.0 < self.select_fraction <= 1.0, "adapt.select_fraction must be in (0, 1]")
        _check(self.max_pseudo > 0 and self.rounds > 0 and self.max_distill > 0
               and (self.epochs is None or self.epochs > 0),
               "adapt.max_pseudo, adapt.rounds, adapt.max_distill and adapt.epochs must be positive")
        _check(self.student_layers >= 1,
               f"adapt.student_layers must be at least 1 (got {self.student_layers})")
        _check(self.lr is None or self.lr > 0, "adapt.lr must be None or positive")
        _check(self.synthetic_ratio >= 0, "adapt.synthetic_ratio must be >= 0")
        _check(self.scl_weight >= 0, "adapt.scl_weight must be >= 0")
        _check((self.max_length is None or self.max_length > 0) and self.batch_size > 0,
               "adapt sizes must be positive")
        _check(self.min_texts >= 2, "adapt.min_texts must be at least 2")
        _check(self.em_temperature > 0 and self.em_iterations > 0,
               "adapt.em_temperature and adapt.em_iterations must be positive")
        _check(self.lm_sample >= 0, "adapt.lm_sample must be >= 0")
        _check(self.lm_sample > 0 or not self.needs_lm(),
               f"adapt.lm_sample=0 (no LM) does not go with adapt.prior={self.resolved_prior()} / "
               f"adapt.pseudo_labels={self.pseudo_labels}: use prior model_em, balanced or none and "
               "pseudo_labels model")
