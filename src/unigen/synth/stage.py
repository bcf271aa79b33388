"""Stages 1-2 together: :func:`synthesize` runs the generation and relabel stages of a config.

``relabel.until_kept`` off (the default): the fixed-size generation stage, then the relabel stage of its
folder. On: UniGen's loop (:mod:`unigen.synth.until_kept`), which fills both folders together until every
label has ``generate.samples_per_label`` kept texts. Either way the folders are
``<workdir>/01_generate/<fingerprint>`` and ``<workdir>/02_relabel/<fingerprint>``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from unigen.config import UniGenConfig
from unigen.synth.generate_stage import generate_stage
from unigen.synth.relabel_stage import relabel_stage
from unigen.synth.relabeling import Scorer
from unigen.synth.sampling import TextSampler
from unigen.synth.until_kept import run_until_kept


def synthesize(cfg: UniGenConfig, workdir: str | Path, progress: bool = True, *,
               sampler: TextSampler | None = None, scorer: Scorer | None = None,
               lm: tuple[Any, Any] | None = None) -> tuple[Path, Path]:
    """Run (or resume, or skip) stages 1-2; returns ``(generation folder, relabel folder)``."""
    if cfg.relabel.until_kept:
        return run_until_kept(cfg, workdir, progress, sampler=sampler, scorer=scorer, lm=lm)
    generated = generate_stage(cfg, workdir, progress, sampler=sampler, lm=lm)
    return generated, relabel_stage(cfg, workdir, generated, progress, scorer=scorer, lm=lm)
