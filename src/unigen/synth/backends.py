"""Where the generator runs: the one place that picks the engine for sampling and for scoring.

``generate.backend`` / ``scoring.backend``: ``transformers`` (PyTorch:
:class:`~unigen.synth.sampling.LMSampler`, :class:`~unigen.synth.scoring.FastLMScorer`) or
``ctranslate2`` (:mod:`unigen.synth.ct2_backend`, converted once into the model cache) or ``vllm``
(:mod:`unigen.synth.vllm_backend`, GPUs only; a one-line error without vllm or a GPU).
"""

from __future__ import annotations

from typing import Any

from unigen.config import ScoringConfig, UniGenConfig
from unigen.synth.common import load_generator
from unigen.synth.sampling import LMSampler, SamplingSettings, TextSampler
from unigen.synth.scoring import FastLMScorer, LMScorer


def sampling_settings(cfg: UniGenConfig) -> SamplingSettings:
    g = cfg.generate
    return SamplingSettings(
        top_k=g.top_k, top_p=g.top_p, temperature=g.temperature, max_new_tokens=g.max_new_tokens
    )


def make_sampler(cfg: UniGenConfig, lm: tuple[Any, Any] | None = None) -> TextSampler:
    """The fast sampler for ``cfg`` (loads the generator unless ``lm`` is given)."""
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
    return LMSampler(model, tokenizer, sampling_settings(cfg), batch_size=cfg.generate.batch_size)


def make_scorer(
    cfg: UniGenConfig, lm: tuple[Any, Any] | None = None, scoring: ScoringConfig | None = None
) -> LMScorer:
    """The relabel stage's scorer for ``cfg`` (loads the generator unless ``lm`` is given)."""
    if (scoring or cfg.scoring).backend == "ctranslate2":
        from unigen.synth.ct2_backend import make_ct2_scorer  # ctranslate2

        return make_ct2_scorer(cfg.generator, cfg.labels, scoring or cfg.scoring, cfg.device)
    if (scoring or cfg.scoring).backend == "vllm":
        from unigen.synth.vllm_backend import make_vllm_scorer  # vllm, CUDA

        return make_vllm_scorer(cfg.generator, cfg.labels, scoring or cfg.scoring)
    model, tokenizer = lm or load_generator(cfg)
    return FastLMScorer(model, tokenizer, cfg.labels, scoring or cfg.scoring)
