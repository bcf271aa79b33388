"""The settings of the two places a causal LM labels texts: :class:`ScoringConfig` (``scoring``: how an LM
scores a text under each label, for relabeling and the Prompting baseline) and :class:`RelabelConfig`
(``relabel``: the relabel stage, including the labeler ensemble of ``relabel.labelers``).
:mod:`unigen.config.schema` holds them in the root config; :func:`check_labeling` checks what needs the root's
labels and generator.
"""

from __future__ import annotations

from dataclasses import dataclass

from unigen.config.fields import _check, _one_of, setting

#: the engines ``generate.backend`` / ``scoring.backend`` can name (unigen.synth.backends)
BACKENDS = ("transformers", "ctranslate2", "vllm")
#: how ``relabel.combine`` merges the labelers' scores (unigen.synth.labeler_ensemble)
COMBINE_RULES = ("mean_logprob", "mean_prob")
#: what separates the words of one set of ``scoring.verbalizer_extra_label_words``
WORD_SEPARATOR = "|"


def label_word_set(text: str) -> tuple[str, ...]:
    """``"bad|good"`` -> ``("bad", "good")`` (one entry of ``scoring.verbalizer_extra_label_words``)."""
    return tuple(word.strip() for word in text.split(WORD_SEPARATOR))


@dataclass(frozen=True)
class ScoringConfig:
    """How a causal LM scores a text under each label (Prompting baseline and relabeling)."""

    rule: str = setting("nll", "nll: paper's mean token NLL of the filled template, lower wins; "
                        "verbalizer: next-token log-prob of the label word")
    template: str = setting('The text in {label} sentiment is: "{text}"',
                            "template for the nll rule ({label}, {text})")
    verbalizer_template: str = setting("{text}\nThe sentiment of this text is",
                                       "prompt for the verbalizer rule; the label word follows it")
    verbalizer_extra_templates: tuple[str, ...] = setting(
        (), "more prompts for the verbalizer rule ({text}); the calibrated scores of every prompt and "
        "label-word set are averaged (docs/method.md §3)", fingerprint="unless_default")
    verbalizer_extra_label_words: tuple[str, ...] = setting(
        (), "more label-word sets for the verbalizer rule, one string per set with a word per label in label "
        "order, separated by | (e.g. 'bad|good'); averaged with the labels themselves",
        fingerprint="unless_default")
    calibrate: bool = setting(True, "verbalizer rule: subtract the label scores of a content-free input")
    content_free_text: str = setting("N/A", "the content-free input used for calibration")
    max_text_tokens: int = setting(128, "texts are cut to this many of the LM's tokens before templating")
    max_total_tokens: int | None = setting(
        None, "if set, cut the whole templated sequence to this many tokens (paper code: 40, prompt included)"
    )
    include_padding: bool = setting(False, "nll rule: average over padding positions too (paper code quirk)")
    batch_size: int = setting(32, "sequences per forward pass", fingerprint=False)
    backend: str = setting("ctranslate2", "ctranslate2 (converted once into the model cache, see "
                           "unigen.synth.ct2_backend; 3.5x the naive loop) | transformers (PyTorch) | "
                           "vllm (GPU, prompt log-probs; unigen.synth.vllm_backend)",
                           fingerprint="unless_default", legacy="transformers")
    ct2_compute_type: str = setting("float32", "ctranslate2 backend: float32 (scores equal transformers') | "
                                    "int8 | int8_float32 (faster, but int8 moves scores enough to change "
                                    "relabel decisions)", fingerprint="unless_default")

    def __post_init__(self) -> None:
        _one_of("scoring.rule", self.rule, ("nll", "verbalizer"))
        _one_of("scoring.backend", self.backend, BACKENDS)
        _one_of("scoring.ct2_compute_type", self.ct2_compute_type, ("int8", "int8_float32", "float32"))
        _check("{label}" in self.template and "{text}" in self.template,
               "scoring.template needs {label} and {text}")
        _check(all("{text}" in t for t in self.verbalizer_templates()),
               "scoring.verbalizer_template and scoring.verbalizer_extra_templates need {text}")
        _check(self.max_text_tokens > 0, "scoring.max_text_tokens must be positive")
        _check(self.max_total_tokens is None or self.max_total_tokens > 8,
               "scoring.max_total_tokens must be None or > 8")
        _check(self.batch_size > 0, "scoring.batch_size must be positive")

    def verbalizer_templates(self) -> tuple[str, ...]:
        """The verbalizer prompts: ``verbalizer_template``, then ``verbalizer_extra_templates``."""
        return (self.verbalizer_template, *self.verbalizer_extra_templates)

    def verbalizer_word_sets(self, labels: tuple[str, ...]) -> tuple[tuple[str, ...], ...]:
        """The verbalizer's label-word sets: ``labels``, then each of ``verbalizer_extra_label_words``."""
        return (tuple(labels), *(label_word_set(s) for s in self.verbalizer_extra_label_words))

    def has_verbalizer_variants(self) -> bool:
        """Whether the verbalizer rule averages more than the one prompt with the labels as words."""
        return bool(self.verbalizer_extra_templates or self.verbalizer_extra_label_words)


@dataclass(frozen=True)
class RelabelConfig:
    """Stage 2: pseudo-relabeling with the generator (docs/method.md §4)."""

    mode: str = setting(
        "soft", "soft: train on softmax(-score/tau); hard: one-hot argmax; none: prompt label"
    )
    temperature: float = setting(0.1, "tau_RE")
    threshold: float = setting(0.2, "T_RE: keep iff p(prompt label) > 1/C + T_RE")
    drop_disagreeing: bool = setting(True, "drop texts whose relabel argmax differs from the prompt label")
    scoring_rule: str = setting("verbalizer", "verbalizer: p(label word | text), the LM's own posterior; "
                                "nll: the paper's p(text | label); auto: the rule that agrees more with the "
                                "prompt labels on the auto sample")
    auto_sample: int = setting(
        256, "auto rule: generated texts (first shard of each stream) scored both ways"
    )
    centre_scores: bool | None = setting(
        False,
        "subtract each label's mean score on the auto sample (assumes the generated texts are balanced like "
        "the prompts; SmolLM2's are mostly positive, results/quality.md); off: the verbalizer's content-free "
        "calibration sets the neutral point; None: tried as a candidate of the auto rule",
    )
    labelers: tuple[str, ...] = setting(
        (), "more LMs (registry names, Hub ids or local paths) whose calibrated verbalizer scores are "
        "combined with the generator's (relabel.combine, docs/method.md §4.4); empty: the generator alone",
        fingerprint="unless_default")
    combine: str = setting(
        "mean_logprob", "with labelers: mean_logprob (weighted mean of the LMs' calibrated scores, a product "
        "of experts) | mean_prob (weighted mean of their soft labels)", fingerprint="unless_default")
    labeler_weights: tuple[float, ...] = setting(
        (), "with labelers: one weight >= 0 per LM, the generator first (weight 0: the LM is not run); "
        "empty: equal weights", fingerprint="unless_default")
    until_kept: bool = setting(False, "UniGen loop: keep generating until samples_per_label survive")
    max_generated_factor: float = setting(
        20.0, "until_kept: stop (targets unmet) after generating this many times samples_per_label per label",
        fingerprint=False)

    def __post_init__(self) -> None:
        _one_of("relabel.mode", self.mode, ("soft", "hard", "none"))
        _one_of("relabel.scoring_rule", self.scoring_rule, ("auto", "nll", "verbalizer"))
        _one_of("relabel.combine", self.combine, COMBINE_RULES)
        _check(not self.labelers or self.scoring_rule == "verbalizer",
               f"relabel.labelers needs relabel.scoring_rule=verbalizer, not {self.scoring_rule}")
        _check(not self.labeler_weights or len(self.labeler_weights) == 1 + len(self.labelers),
               "relabel.labeler_weights needs one weight per LM: the generator's, then each labeler's")
        _check(all(w >= 0 for w in self.labeler_weights) and (not self.labeler_weights
                                                               or sum(self.labeler_weights) > 0),
               "relabel.labeler_weights must be >= 0 with a positive sum")
        _check(self.auto_sample > 0, "relabel.auto_sample must be positive")
        _check(self.max_generated_factor >= 1.0, "relabel.max_generated_factor must be >= 1")
        _check(self.temperature > 0, "relabel.temperature must be positive")
        _check(0.0 <= self.threshold < 1.0, "relabel.threshold must be in [0, 1)")

    def labeler_names(self, generator: str) -> tuple[str, ...]:
        """The LMs that label texts: ``generator``, then ``labelers``."""
        return (generator, *self.labelers)

    def resolved_labeler_weights(self) -> tuple[float, ...]:
        """``labeler_weights``, or 1 for every LM when unset."""
        return self.labeler_weights or (1.0,) * (1 + len(self.labelers))


def check_labeling(labels: tuple[str, ...], generator: str, scoring: ScoringConfig,
                   relabel: RelabelConfig) -> None:
    """What the two sections need from the root config: label-word sets of ``len(labels)`` distinct words, and
    labelers other than the generator and each other (their scores are stored under their names)."""
    for words in scoring.verbalizer_word_sets(labels)[1:]:
        _check(len(words) == len(labels) and all(words) and len(set(words)) == len(words),
               f"scoring.verbalizer_extra_label_words: {WORD_SEPARATOR.join(words)!r} needs {len(labels)} "
               f"distinct words separated by {WORD_SEPARATOR}, one per label")
    names = relabel.labeler_names(generator)
    _check(len(set(names)) == len(names),
           "relabel.labelers must differ from each other and from the generator")
