"""The configuration schema: one frozen dataclass per stage plus the root :class:`UniGenConfig` (the
scoring and relabel sections are :mod:`unigen.config.labeling`, ``adapt`` is :mod:`unigen.config.adaptation`).

Every field is declared with :func:`setting` (default, help text, fingerprint mode) and checked in
``__post_init__``; derived defaults (epochs, learning rates, how many rows to keep) are methods of the
dataclasses. The defaults live here; ``configs/default.yaml`` is generated from them (``unigen config``)
and a test checks that the two agree. Loading, overrides and fingerprints are :mod:`unigen.config.loading`.

A field whose metadata says ``fingerprint=False`` (batch sizes, devices) does not change a stage's output
and is left out of the stage fingerprint.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from unigen.config.adaptation import AdaptConfig
from unigen.config.fields import _check, _one_of, setting
from unigen.config.labeling import BACKENDS, RelabelConfig, ScoringConfig, check_labeling
from unigen.prompts import PROMPT_SETS, LengthVariant, length_variants

__all__ = ["BACKENDS", "AdaptConfig", "RelabelConfig", "ScoringConfig", "setting"]

#: learning rate and epochs when ``train.lr`` / ``train.epochs`` / ``weight.inner_lr`` are unset
#: (docs/method.md, "Hyper-parameters"): the LSTM trains from scratch, transformers are fine-tuned
DEFAULT_LR = {"lstm": 1e-3, "transformer": 2e-5}
DEFAULT_EPOCHS = {"lstm": 5, "transformer": 3}


#: how ``evaluate`` runs a task model (unigen.evaluation.evaluate.load_classifier)
EVAL_ENGINES = ("auto", "pytorch", "pytorch-bf16", "onnx")


def _family(tam: str) -> str:
    return "lstm" if tam == "lstm" else "transformer"


@dataclass(frozen=True)
class GenerateConfig:
    """Stage 1: sample synthetic texts from prompts (docs/method.md §2)."""

    prompt_set: str = setting("universal", "universal | movie | products | restaurant | electronics | "
                              "tweet | combined")
    samples_per_label: int = setting(
        1500, "target number of generated texts per label (the paper: 500k kept)")
    top_k: int = setting(40, "top-k sampling")
    top_p: float = setting(0.9, "nucleus sampling")
    temperature: float = setting(1.0, "sampling temperature")
    max_new_tokens: int = setting(31, "new tokens per sample (paper code: 40 total incl. ~9 prompt tokens)")
    dedup: bool = setting(True, "drop exact duplicate texts")
    min_words: int = setting(
        0,
        "drop texts of fewer words (0: keep all, the paper code; original ZeroGen: 10)",
        fingerprint="unless_default",
    )
    shard_size: int = setting(256, "rows per shard; part of the fingerprint because seeds are per shard")
    precision: str = setting("fp32", "fp32 | bf16: generator weights while sampling (bf16: faster on CPUs "
                             "with bf16 support, different samples)")
    batch_size: int = setting(64, "prompts per generate call (part of the fingerprint with the ctranslate2 "
                              "backend, whose rows of a batch share one random stream)", fingerprint=False)
    backend: str = setting("ctranslate2", "ctranslate2 (int8, converted once into the model cache, see "
                           "unigen.synth.ct2_backend; 7.6x the naive loop) | transformers (PyTorch) | "
                           "vllm (GPU; unigen.synth.vllm_backend)",
                           fingerprint="unless_default", legacy="transformers")
    ct2_compute_type: str = setting("int8", "ctranslate2 backend: int8 (weights converted to int8) | "
                                    "int8_float32 | float32", fingerprint="unless_default")
    lengths: tuple[str, ...] = setting(
        ("sentence", "short", "long"), "length classes (unigen.prompts.LENGTH_CLASSES: sentence, short, "
        "long): each rewords the prompts for its length and has its own new-token budget; empty: the "
        "paper's one prompt per domain at max_new_tokens (the default before 2026-12; results/frontier.md)",
        fingerprint="unless_default", legacy=())
    length_shares: tuple[float, ...] = setting((), "share of samples_per_label per lengths class, in order "
                                               "(normalised; empty: equal)", fingerprint="unless_default")
    length_tokens: tuple[int, ...] = setting((), "new-token budget per lengths class, in order (empty: the "
                                             "class's own: sentence 31, short 64, long 160)",
                                             fingerprint="unless_default")
    guidance: float = setting(0.0, "contrast between label prompts (unigen.synth.guidance): sample from "
                              "p(x|label)^(1+g) / p(x|other labels)^g, the other labels' prompts of the same "
                              "domain and length; 0: off (the paper); one forward pass per label instead of "
                              "one; transformers backend only", fingerprint="unless_default")

    def __post_init__(self) -> None:
        _one_of("generate.prompt_set", self.prompt_set, tuple(PROMPT_SETS))
        self.length_variants()  # checks lengths, length_shares and length_tokens
        _one_of("generate.precision", self.precision, ("fp32", "bf16"))
        _one_of("generate.backend", self.backend, BACKENDS)
        _one_of("generate.ct2_compute_type", self.ct2_compute_type, ("int8", "int8_float32", "float32"))
        _check(self.backend == "transformers" or self.precision == "fp32",
               "generate.precision applies to the transformers backend; use generate.ct2_compute_type")
        _check(self.samples_per_label > 0, "generate.samples_per_label must be positive")
        _check(self.top_k >= 0, "generate.top_k must be >= 0")
        _check(0.0 < self.top_p <= 1.0, "generate.top_p must be in (0, 1]")
        _check(self.temperature > 0, "generate.temperature must be positive")
        _check(self.max_new_tokens > 0, "generate.max_new_tokens must be positive")
        _check(self.min_words >= 0, "generate.min_words must be >= 0")
        _check(0.0 <= self.guidance < float("inf"), "generate.guidance must be >= 0 (0: off)")
        _check(self.guidance == 0 or self.backend == "transformers",
               f"generate.guidance runs on the transformers backend only, not {self.backend}: add "
               "--set generate.backend=transformers")
        _check(self.shard_size > 0 and self.batch_size > 0, "generate sizes must be positive")

    def length_variants(self) -> tuple[LengthVariant, ...]:
        """The configured length classes with their shares and budgets (``()``: off, the paper)."""
        return length_variants(self.lengths, self.length_shares, self.length_tokens)


@dataclass(frozen=True)
class WeightConfig:
    """Stage 3: SunGen bi-level sample weighting (docs/method.md §5)."""

    enabled: bool = setting(True, "learn weights; off means every sample has weight 1")
    tam: str = setting("lstm", "task model used inside the bi-level loop")
    outer_epochs: int = setting(20, "outer iterations (paper: 50; at the default scale the weights only gate "
                                "the memory bank, whose members are settled by about epoch 11)")
    outer_lr: float = setting(5e-2, "Adam lr on theta (paper 5e-2; paper code 0.1)")
    inner_lr: float | None = setting(None, "inner Adam lr; None: 1e-3 for the LSTM, 2e-5 for transformers")
    inner_epochs: int = setting(1, "inner epochs per outer iteration")
    init_theta: float = setting(1.0, "initial logit; weight = sigmoid(theta)")
    robust_a: float = setting(10.0, "A of the reverse cross-entropy outer loss")
    drop_lowest: float = setting(0.1, "outer loss ignores this fraction of lowest-weighted samples")
    balance_classes: bool = setting(
        False,
        "improvement, off = paper: the outer loss gives every class of the "
        "kept validation rows equal total weight (see unigen.weighting.sungen)",
    )
    valid_size: int = setting(50_000, "resampled synthetic validation subset per outer iteration")
    clip: float = setting(3.0, "max-norm of the theta gradient")
    keep_top: int | None = setting(
        200_000,
        "keep the top-K samples by weight (the paper code's sungen_train_size; all are kept when fewer)",
    )
    keep_fraction: float | None = setting(
        None,
        "keep this share of samples by weight instead (200k/900k = 0.2222 is the paper's ratio at its scale)",
    )
    batch_size: int = setting(32, "inner batch size")
    hypergradient: str = setting(
        "central",
        "how <grad CE_i, g> is computed: central (central differences along g in float64, two forward "
        "passes) or double_backward (the paper code's create_graph route); the same values to ~1e-4, "
        "central ~3x faster", fingerprint="unless_default", legacy="double_backward")

    def __post_init__(self) -> None:
        _check(self.outer_epochs > 0 and self.inner_epochs > 0, "weight epochs must be positive")
        _one_of("weight.hypergradient", self.hypergradient, ("central", "double_backward"))
        _check(0.0 <= self.drop_lowest < 1.0, "weight.drop_lowest must be in [0, 1)")
        _check(self.keep_top is None or self.keep_top > 0, "weight.keep_top must be None or positive")
        _check(self.inner_lr is None or self.inner_lr > 0, "weight.inner_lr must be None or positive")
        _check(
            self.keep_fraction is None or 0.0 < self.keep_fraction <= 1.0,
            "weight.keep_fraction must be in (0, 1]",
        )

    def resolved_inner_lr(self) -> float:
        """``inner_lr``, or 1e-3 for the LSTM and 2e-5 for transformers when unset."""
        return self.inner_lr if self.inner_lr is not None else DEFAULT_LR[_family(self.tam)]

    def keep_count(self, n: int) -> int:
        """How many of ``n`` weighted samples are kept."""
        if self.keep_top is not None:
            return min(n, self.keep_top)
        return n if self.keep_fraction is None else max(1, round(n * self.keep_fraction))


@dataclass(frozen=True)
class TrainConfig:
    """Stage 4: task-model training with SCL and the denoising memory bank (docs/method.md §6)."""

    tam: str = setting(
        "mpnet-base", "lstm | an encoder name or path (mpnet-base, minilm-l6, roberta-base, ...)"
    )
    epochs: int | None = setting(None, "None: 5 for the LSTM, 3 for transformers")
    lr: float | None = setting(None, "None: 1e-3 for the LSTM, 2e-5 for transformers")
    batch_size: int = setting(32, "training batch size")
    max_length: int = setting(40, "token limit of the task model's inputs")
    clip: float = setting(3.0, "gradient max-norm")
    scl_weight: float = setting(0.5, "alpha: weight of the supervised contrastive loss (0 disables it)")
    scl_temperature: float = setting(0.2, "tau_SCL")
    bank_size: int = setting(64, "memory-bank capacity")
    momentum: float = setting(0.999, "momentum-encoder EMA coefficient")
    bank_threshold: float = setting(0.8, "T_MB: only samples with weight above this enter the bank")
    denoise_bank: bool = setting(True, "gate the bank by weight (off: every sample enters)")
    targets: str = setting("soft", "soft | hard training targets")
    code_faithful: bool = setting(False, "reproduce the paper code's SCL variant (docs/method.md §9)")
    valid_fraction: float = setting(0.1, "synthetic validation share used to pick the best epoch")
    projection_dim: int = setting(256, "projection head size")
    weight_ce: bool = setting(
        False, "multiply each sample's CE by its weight (paper code; docs/method.md §9)"
    )
    lstm_hidden: int = setting(
        256, "LSTM units per direction (stays under 7M parameters with a 50k vocabulary)"
    )
    pooling: str = setting(
        "mean", "transformer sentence vector: mean (masked mean of the tokens, how sentence-transformers "
        "encoders were trained) | cls (first token, the paper)",
        fingerprint="unless_default", legacy="cls",
    )
    predict_max_length: int | None = setting(
        128, "token limit at prediction, saved with the model (None: max_length, the paper)",
        fingerprint="unless_default", legacy=None,
    )
    min_steps: int = setting(
        0, "at least this many optimiser steps: more epochs when the data is small (0: epochs only)",
        fingerprint="unless_default",
    )
    warmup: float = setting(0.0, "share of the optimiser steps with a linear lr warm-up from 0",
                            fingerprint="unless_default")
    schedule: str = setting("constant", "constant | linear: lr decays linearly to 0 at the last step",
                            fingerprint="unless_default")
    average_from: float | None = setting(
        None, "share of the optimiser steps after which the weights after every step are averaged into "
        "the returned model (stochastic weight averaging, as SWAD for domain generalization); None: the "
        "best epoch on synthetic validation (the paper)", fingerprint="unless_default",
    )
    precision: str = setting(
        "auto", "fp32 | bf16 (bfloat16 autocast of the forward passes; weights, optimiser and losses stay "
        "float32) | auto (bf16 for transformers where the device computes bf16 natively: AVX512-BF16 or AMX "
        "CPUs, bf16 GPUs; else fp32)", fingerprint="unless_default", legacy="fp32",
    )
    group_by_length: bool = setting(
        False, "form training batches from rows of similar token length (shuffled within chunks of 50 "
        "batches, then the batches shuffled), so little of each step is padding; off: measured 1.3 points "
        "worse with MPNet-base (results/main_run.md)", fingerprint="unless_default", legacy=False,
    )

    def __post_init__(self) -> None:
        _one_of("train.targets", self.targets, ("soft", "hard"))
        _one_of("train.pooling", self.pooling, ("cls", "mean"))
        _one_of("train.schedule", self.schedule, ("constant", "linear"))
        _one_of("train.precision", self.precision, ("auto", "fp32", "bf16"))
        _check(0.0 <= self.warmup < 1.0, "train.warmup must be in [0, 1)")
        _check(self.average_from is None or 0.0 <= self.average_from < 1.0,
               "train.average_from must be None or in [0, 1)")
        _check(self.min_steps >= 0, "train.min_steps must be >= 0")
        _check(self.predict_max_length is None or self.predict_max_length > 0,
               "train.predict_max_length must be None or positive")
        _check(self.epochs is None or self.epochs > 0, "train.epochs must be positive")
        _check(self.lr is None or self.lr > 0, "train.lr must be positive")
        _check(0.0 < self.valid_fraction < 1.0, "train.valid_fraction must be in (0, 1)")
        _check(0.0 <= self.momentum < 1.0, "train.momentum must be in [0, 1)")
        _check(self.lstm_hidden > 0 and self.projection_dim > 0, "train sizes must be positive")

    def resolved_epochs(self) -> int:
        """``epochs``, or 5 for the LSTM and 3 for transformers when unset (docs/method.md)."""
        return self.epochs if self.epochs is not None else DEFAULT_EPOCHS[_family(self.tam)]

    def resolved_lr(self) -> float:
        """``lr``, or 1e-3 for the LSTM and 2e-5 for transformers when unset (docs/method.md)."""
        return self.lr if self.lr is not None else DEFAULT_LR[_family(self.tam)]

    def steps_per_epoch(self, train_rows: int) -> int:
        """Optimiser steps in one pass over ``train_rows`` rows (the last batch may be short)."""
        return max(1, -(-train_rows // self.batch_size))

    def planned_epochs(self, train_rows: int) -> int:
        """:meth:`resolved_epochs`, raised so that the run makes at least ``min_steps`` optimiser steps."""
        return max(self.resolved_epochs(), -(-self.min_steps // self.steps_per_epoch(train_rows)))

    def lr_factor(self, step: int, total_steps: int) -> float:
        """Multiplier of the base lr at optimiser step ``step`` (0-based) of ``total_steps``.

        ``w = round(warmup * total_steps)`` warm-up steps: ``(step + 1) / w``; then ``1`` (constant)
        or ``(total_steps - step) / (total_steps - w)`` (linear decay to 0).
        """
        warm = round(self.warmup * total_steps)
        if step < warm:
            return (step + 1) / warm
        if self.schedule == "linear":
            return max(0.0, (total_steps - step) / max(1, total_steps - warm))
        return 1.0

    def average_start(self, total_steps: int) -> int | None:
        """Steps after which weight averaging starts (``round(average_from * total_steps)``), or None."""
        if self.average_from is None:
            return None
        return min(total_steps - 1, round(self.average_from * total_steps))


@dataclass(frozen=True)
class EvalConfig:
    """Stage 5: evaluation on the real test sets."""

    datasets: str = setting("all", "all, or a comma-separated list of test-set names")
    limit: int | None = setting(
        1000, "fixed seeded subsample of at most this many rows per set (None: the full sets; the default "
        "keeps the main job's evaluation of MPNet-base within its time budget)")
    sample_seed: int | None = setting(None, "seed of that subsample (None: the run's seed; set it so runs of "
                                      "different seeds are scored on the same rows)", fingerprint=False)
    data_dir: str | None = setting(None, "folder with test/ and validation/ (default ../shared/datasets)",
                                   fingerprint=False)
    batch_size: int = setting(64, "texts per prediction batch", fingerprint=False)
    engine: str = setting("auto", "how task models predict: pytorch (float32), pytorch-bf16 (bfloat16 "
                          "autocast), onnx (float32 ONNX Runtime on the CPU) or auto (transformers in bf16 "
                          "where the device has native bf16, else onnx on a CPU, else pytorch)",
                          fingerprint=False)

    def __post_init__(self) -> None:
        _check(self.limit is None or self.limit > 0, "evaluate.limit must be None or positive")
        _one_of("evaluate.engine", self.engine, EVAL_ENGINES)


@dataclass(frozen=True)
class RunConfig:
    """The whole pipeline (``unigen run``): method preset, task models, baselines."""

    method: str = setting(
        "unigen", "unigen | zerogen | sungen (a preset applied under the file and --set values)"
    )
    domain: str | None = setting(None, "zerogen/sungen: movie | products | restaurant | electronics | tweet")
    ablations: tuple[str, ...] = setting(
        (), "hard-relabel, no-relabel, no-denoise-bank, no-scl, combined-prompts"
    )
    tams: tuple[str, ...] = setting(("lstm", "mpnet-base"), "task models trained on the same synthetic data")
    baselines: tuple[str, ...] = setting(("vader", "prompt"), "baselines evaluated beside the task models")
    prompt_limit: int | None = setting(100, "rows per test set for the Prompting baseline (None: full sets)")
    prompt_rule: str = setting(
        "relabel", "scoring rule of the Prompting baseline: relabel (relabel.scoring_rule, so the row is the "
        "labeler that taught the task models; scoring.rule when that is auto), nll (the paper's Prompting) "
        "or verbalizer", fingerprint=False)
    executor: str = setting("local", "local | ray: where the generate and relabel shards run (ray: Ray "
                            "Data actors on RAY_ADDRESS or a local instance, same rows; "
                            "unigen.synth.ray_executor)", fingerprint=False)
    actors: int = setting(0, "ray executor: model-holding actors (0: as many as the cluster's CPUs, or GPUs "
                          "with gpus_per_actor > 0, allow)", fingerprint=False)
    cpus_per_actor: float = setting(1.0, "ray executor: CPUs reserved per actor (its torch / ctranslate2 "
                                    "threads)", fingerprint=False)
    gpus_per_actor: float = setting(0.0, "ray executor: GPUs per actor (1 for the vllm backend)",
                                    fingerprint=False)

    def __post_init__(self) -> None:
        _check(len(self.tams) > 0, "run.tams needs at least one task model")
        _one_of("run.executor", self.executor, ("local", "ray"))
        _check(self.actors >= 0, "run.actors must be >= 0 (0: sized from the cluster)")
        _check(self.cpus_per_actor > 0 and self.gpus_per_actor >= 0,
               "run.cpus_per_actor must be positive and run.gpus_per_actor >= 0")
        for b in self.baselines:
            _one_of("run.baselines item", b, ("vader", "prompt"))
        _one_of("run.prompt_rule", self.prompt_rule, ("relabel", "nll", "verbalizer"))


@dataclass(frozen=True)
class UniGenConfig:
    """The whole pipeline."""

    seed: int = setting(42, "run seed; every shard and stage derives its own seed from it")
    labels: tuple[str, ...] = setting(("negative", "positive"), "label words, index = class id")
    generator: str = setting("smollm2-135m", "causal LM: registry name, Hub id or local path")
    device: str = setting("auto", "auto | cpu | cuda | cuda:N", fingerprint=False)
    scoring: ScoringConfig = field(default_factory=ScoringConfig)
    generate: GenerateConfig = field(default_factory=GenerateConfig)
    relabel: RelabelConfig = field(default_factory=RelabelConfig)
    weight: WeightConfig = field(default_factory=WeightConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    evaluate: EvalConfig = field(default_factory=EvalConfig)
    run: RunConfig = field(default_factory=RunConfig)
    adapt: AdaptConfig = field(default_factory=AdaptConfig)

    def __post_init__(self) -> None:
        _check(len(self.labels) >= 2, "labels needs at least two label words")
        _check(len(set(self.labels)) == len(self.labels), "labels must be distinct")
        check_labeling(self.labels, self.generator, self.scoring, self.relabel)
