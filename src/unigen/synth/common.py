"""What the generate and relabel runners share: their settings and fingerprints, the generator and the
progress bar.

A stage's *settings* are the part of the config that determines its rows; they are written to its
manifest and hashed into its fingerprint (:func:`unigen.stages.open_stage`). With ``relabel.until_kept``
the generated shards depend on the relabel filter, so the generation settings include the relabel and
scoring settings too.
"""

from __future__ import annotations

from typing import Any

from unigen.config import UniGenConfig, fingerprint_dict
from unigen.registry import load_causal_lm, pick_device
from unigen.stages import fingerprint_of


def scoring_settings(cfg: UniGenConfig) -> dict[str, Any]:
    """The scoring settings relabeling uses (``scoring.rule`` and ``scoring.template`` belong to the
    Prompting baseline: relabeling takes its rule from ``relabel.scoring_rule`` and its nll template
    from the prompt set)."""
    out = {**fingerprint_dict(cfg.scoring), **backend_fingerprint(cfg.scoring)}
    return {k: v for k, v in out.items() if k not in ("rule", "template")}


def backend_fingerprint(section: Any) -> dict[str, Any]:
    """What changes ctranslate2 outputs beyond the section's own fingerprint (``generate`` or ``scoring``):
    the compute type even when it is the default, and for sampling the batch size (rows of a batch
    share one random stream, :mod:`unigen.synth.ct2_backend`). The transformers and vllm backends seed
    every row on its own (vllm: one request per row seed), so they add nothing; the backend name itself is
    in the section's fingerprint."""
    if section.backend in ("transformers", "vllm"):
        return {}
    extra = {"ct2_compute_type": section.ct2_compute_type}
    if hasattr(section, "max_new_tokens"):
        extra["batch_size"] = section.batch_size
    return extra


def generate_settings(cfg: UniGenConfig) -> dict[str, Any]:
    """The settings that determine the generated rows (the manifest's config subset)."""
    out: dict[str, Any] = {
        "seed": cfg.seed,
        "labels": list(cfg.labels),
        "generator": cfg.generator,
        "generate": {**fingerprint_dict(cfg.generate), **backend_fingerprint(cfg.generate)},
        "until_kept": cfg.relabel.until_kept,
    }
    if cfg.relabel.until_kept:  # which shards exist then depends on the relabel filter
        out["relabel"] = fingerprint_dict(cfg.relabel)
        out["scoring"] = scoring_settings(cfg)
    return out


def generate_fingerprint(cfg: UniGenConfig) -> str:
    return fingerprint_of("generate", generate_settings(cfg))


def relabel_settings(cfg: UniGenConfig) -> dict[str, Any]:
    """The settings that determine the relabeled rows of a given generation folder."""
    return {"labels": list(cfg.labels), "generator": cfg.generator, "relabel": fingerprint_dict(cfg.relabel),
            "scoring": scoring_settings(cfg)}


def relabel_fingerprint(cfg: UniGenConfig, gen_fingerprint: str) -> str:
    return fingerprint_of("relabel", relabel_settings(cfg), upstream={"generate": gen_fingerprint})


def load_generator(cfg: UniGenConfig) -> tuple[Any, Any]:
    """(model, tokenizer) of ``cfg.generator`` on ``cfg.device``."""
    return load_causal_lm(cfg.generator, device=pick_device(cfg.device))
