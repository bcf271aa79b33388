"""Where the generator runs: the one place that picks the engine for sampling and for scoring (the relabel
stage and the Prompting baseline both get their scorer here).

``generate.backend`` / ``scoring.backend``: ``transformers`` (PyTorch:
:class:`~unigen.synth.sampling.LMSampler`, or with ``generate.guidance > 0``
:class:`~unigen.synth.guidance.GuidedSampler`; :class:`~unigen.synth.scoring.FastLMScorer`) or
``ctranslate2`` (:mod:`unigen.synth.ct2_backend`, converted once into the model cache) or ``vllm``
(:mod:`unigen.synth.vllm_backend`, GPUs only; a one-line error without vllm or a GPU).

The relabel stage's scorer is :func:`make_relabel_scorer`: the generator's, or with ``relabel.labelers`` a
:class:`~unigen.synth.labeler_ensemble.LabelerEnsemble` of the generator's and one scorer per labeler.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

from unigen.config import ScoringConfig, UniGenConfig
from unigen.errors import ConfigError
from unigen.registry import load_causal_lm, pick_device
from unigen.synth.common import load_generator
from unigen.synth.labeler_ensemble import LabelerEnsemble
from unigen.synth.relabeling import Scorer
from unigen.synth.sampling import LMSampler, SamplingSettings, TextSampler
from unigen.synth.scoring import FastLMScorer, LMScorer


def sampling_settings(cfg: UniGenConfig) -> SamplingSettings:
    return SamplingSettings.from_config(cfg.generate)


def make_sampler(cfg: UniGenConfig, lm: tuple[Any, Any] | None = None) -> TextSampler:
    """The fast sampler for ``cfg``. ``lm``, a loaded (transformers model, tokenizer), serves the transformers
    backend only; ctranslate2 and vLLM load their own converted copy of ``cfg.generator``."""
    if cfg.generate.guidance > 0 and cfg.generate.backend != "transformers":  # GenerateConfig checks it too
        raise ConfigError(f"generate.guidance runs on the transformers backend only, not "
                          f"{cfg.generate.backend}: add --set generate.backend=transformers")
    if cfg.generate.backend == "ctranslate2":
        from unigen.synth.ct2_backend import make_ct2_sampler  # ctranslate2

        return make_ct2_sampler(cfg, sampling_settings(cfg))
    if cfg.generate.backend == "vllm":
        from unigen.synth.vllm_backend import make_vllm_sampler  # vllm, CUDA

        return make_vllm_sampler(cfg, sampling_settings(cfg))
    model, tokenizer = lm or load_generator(cfg)
    if cfg.generate.precision == "bf16":
        import copy

        import torch

        model = copy.deepcopy(model).to(torch.bfloat16)
    if cfg.generate.guidance > 0:
        from unigen.synth.guidance import GuidedSampler

        return GuidedSampler(model, tokenizer, sampling_settings(cfg), cfg.generate.guidance,
                             batch_size=cfg.generate.batch_size)
    return LMSampler(model, tokenizer, sampling_settings(cfg), batch_size=cfg.generate.batch_size)


def make_scorer(cfg: UniGenConfig, lm: tuple[Any, Any] | None = None, scoring: ScoringConfig | None = None,
                *, generator: str | None = None) -> LMScorer:
    """The scorer for ``cfg`` on ``scoring.backend``: the relabel stage's, and the Prompting baseline's
    (``generator``: another LM than ``cfg.generator``). Loads the LM unless ``lm`` is given (transformers
    backend only, as in :func:`make_sampler`)."""
    scoring = scoring or cfg.scoring
    name = generator or cfg.generator
    if scoring.backend == "ctranslate2":
        from unigen.synth.ct2_backend import make_ct2_scorer  # ctranslate2

        return make_ct2_scorer(name, cfg.labels, scoring, cfg.device)
    if scoring.backend == "vllm":
        from unigen.synth.vllm_backend import make_vllm_scorer  # vllm, CUDA

        return make_vllm_scorer(name, cfg.labels, scoring)
    model, tokenizer = lm or (load_generator(cfg) if name == cfg.generator
                              else load_causal_lm(name, device=pick_device(cfg.device)))
    return FastLMScorer(model, tokenizer, cfg.labels, scoring)


def make_relabel_scorer(cfg: UniGenConfig, lm: tuple[Any, Any] | None = None, *, given: Scorer | None = None,
                        cache_dir: str | Path | None = None) -> Scorer:
    """The relabel stage's scorer: ``given`` or the generator's (:func:`make_scorer`, loaded now), or with
    ``relabel.labelers`` a :class:`LabelerEnsemble` of that and one scorer per labeler on ``scoring.backend``,
    each loaded on first use (``cache_dir``: where the ensemble caches each LM's scores)."""
    if not cfg.relabel.labelers or isinstance(given, LabelerEnsemble):
        return given if given is not None else make_scorer(cfg, lm)
    r = cfg.relabel
    generator = given if given is not None else partial(make_scorer, cfg, lm)
    members = [(cfg.generator, generator), *((name, partial(make_scorer, cfg, generator=name))
                                             for name in r.labelers)]
    return LabelerEnsemble(members, combine=r.combine, temperature=r.temperature,
                           weights=r.resolved_labeler_weights(), cache_dir=cache_dir)
