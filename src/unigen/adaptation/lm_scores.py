"""The LM's side of ``unigen adapt``: its calibrated-verbalizer scores of a seeded sample of the texts.

Scoring long texts with the LM is the slowest step of an adaptation (10,000 IMDB reviews: the 2,000-text
sample takes about half of the stage, results/adapt.md), and the scores depend only on the texts, the
labeler and its scoring settings, not on the adaptation method. So they are scored once per stage folder
(``lm.json``, kept for a resumed run) and, when a *sibling* stage folder (another adaptation of the same
texts with other ``adapt`` settings, e.g. ``<workdir>/06_adapt/*``) already holds scores of exactly the same
texts by the same labeler under the same scoring settings, they are copied from it instead of scored again.
"Exactly the same texts" is checked by the sha256 of the scored texts themselves (``texts_sha256``,
:func:`unigen.files.texts_digest`).

``lm.json``: ``{"labeler", "index" (the sample's positions in the texts), "scores" (N, K; lower = more
likely), "texts_sha256", "reused_from" (optional)}``; probabilities are ``softmax(-scores / tau_RE)``.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from unigen.adaptation.priors import softmax
from unigen.config import UniGenConfig, fingerprint_dict
from unigen.files import atomic_write_json, texts_digest
from unigen.seeds import derive_seed
from unigen.stages import MANIFEST, Stage

__all__ = ["LM_SCORES", "lm_probs", "lm_sample_index", "seeded_sample"]

LM_SCORES = "lm.json"


def seeded_sample(n: int, size: int, seed: int, stream: str) -> np.ndarray:
    """Sorted positions of a seeded sample of ``size`` of ``n`` texts (all of them when ``size >= n``)."""
    if size >= n:
        return np.arange(n)
    return np.sort(np.random.default_rng(derive_seed(seed, stream)).permutation(n)[:size])


def lm_sample_index(n: int, size: int, seed: int) -> np.ndarray:
    """The seeded sample of texts the LM labels."""
    return seeded_sample(n, size, seed, "adapt-lm-sample")


def _sibling_scores(stage: Stage, labeler: str, scoring: dict[str, Any], digest: str
                    ) -> tuple[Path, dict[str, Any]] | None:
    """``(folder, lm.json)`` of a sibling stage folder that scored exactly these texts the same way."""
    for folder in sorted(p for p in stage.path.parent.iterdir() if p.is_dir() and p != stage.path):
        path, manifest = folder / LM_SCORES, folder / MANIFEST
        if not (path.is_file() and manifest.is_file()):
            continue
        try:
            config = json.loads(manifest.read_text(encoding="utf-8")).get("config") or {}
            saved = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if (config.get("labeler") == labeler and config.get("scoring") == scoring
                and saved.get("labeler") == labeler and saved.get("texts_sha256") == digest):
            return folder, saved
    return None


def lm_probs(stage: Stage, cfg: UniGenConfig, texts: list[str], labeler: str, tau: float, scorer: Any,
             progress: bool) -> tuple[np.ndarray | None, np.ndarray | None]:
    """``(index, q)``: the sample's positions and the LM's probabilities ``q = softmax(-S / tau)`` of its
    texts; ``(None, None)`` when the method does not use the LM (module docstring for the reuse)."""
    if not cfg.adapt.needs_lm():
        return None, None
    path = stage.path / LM_SCORES
    if path.is_file():
        saved = json.loads(path.read_text(encoding="utf-8"))
        index, scores = np.array(saved["index"], dtype=int), np.array(saved["scores"], dtype=np.float64)
        return index, softmax(-scores, tau)
    index = lm_sample_index(len(texts), cfg.adapt.lm_sample, cfg.seed)
    sample = [texts[i] for i in index]
    digest = texts_digest(sample)
    scoring = dataclasses.replace(cfg.scoring, rule="verbalizer", calibrate=True)
    found = _sibling_scores(stage, labeler, fingerprint_dict(cfg.scoring), digest)
    if found is not None:
        folder, saved = found
        scores = np.array(saved["scores"], dtype=np.float64)
        if progress:
            print(f"adapt: the LM's scores of these {len(sample):,} texts reused from {folder}",
                  file=sys.stderr)
        reused_from = str(folder)
    else:
        if scorer is None:
            from unigen.synth.backends import make_scorer  # the LM

            scorer = make_scorer(cfg, scoring=scoring, generator=labeler)
        scores = np.asarray(scorer.scores(sample, rule="verbalizer", progress=progress), dtype=np.float64)
        reused_from = None
    atomic_write_json(path, {"labeler": labeler, "index": index.tolist(), "scores": scores.tolist(),
                             "texts_sha256": digest, "reused_from": reused_from})
    return index, softmax(-scores, tau)
