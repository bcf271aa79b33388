r"""Relabel stage, pure core: soft labels from LM scores, the filter, and the choice of scoring rule.

The runner is :mod:`unigen.synth.relabel_stage`.

Notation: a text ``x`` generated with prompt label ``y``, label set of size ``K``, score matrix
``S`` from :class:`unigen.synth.scoring.LMScorer` (lower = more likely), temperature ``tau``
(``tau_RE`` = 0.1)
and threshold ``T`` (``T_RE`` = 0.2).

Soft label (any ``K``)::

    p_k(x) = exp(-S_k / tau) / sum_j exp(-S_j / tau)          (softmax(-S / tau))

For ``K = 2`` this is exactly the paper code's ``1 - softmax(S / tau)``: with ``d = S_0 - S_1``,
``1 - softmax(S/tau)_0 = e^{S_1/tau} / (e^{S_0/tau} + e^{S_1/tau}) = sigma(-d / tau) = p_0``
(:func:`paper_binary_probs` keeps the code's form for the tests). For ``K > 2`` the code's form is
not a distribution; the softmax is the paper's formula (docs/method.md §4.1).

Hard label ``h = argmax_k p_k``, confidence ``c = max_k p_k``. The filter keeps ``x`` iff

* ``p_y > 1/K + T`` (the prompt label is more likely than uniform by more than ``T``), and
* ``h == y`` when ``drop_disagreeing`` (with ``1/K + T >= 1/2`` the first rule implies it).

Without ``drop_disagreeing`` the first rule becomes ``c > 1/K + T`` and the text is relabeled to
``h`` (a "flip" variant the paper does not use). Modes: ``soft`` trains on ``p`` (default), ``hard``
on ``onehot(h)``, ``none`` skips scoring and keeps every text with ``onehot(y)`` (the paper's
no-relabeling ablation). Probabilities are stored unrounded (the paper code rounds to 2 decimals).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import numpy as np

from unigen.config import RelabelConfig
from unigen.prompts import get_prompt

RULES = ("nll", "verbalizer")


class Scorer(Protocol):
    """What the relabel stage needs from a scorer (:class:`unigen.synth.scoring.LMScorer` or a fake)."""

    def scores(self, texts: Sequence[str], *, rule: str | None = None, template: str | None = None,
               progress: bool = False) -> np.ndarray:  # pragma: no cover
        ...


# ---------------------------------------------------------------- math

def soft_labels(scores: np.ndarray, tau: float) -> np.ndarray:
    """``softmax(-S / tau)`` row-wise, numerically stable. ``(N, K) -> (N, K)``."""
    z = -np.asarray(scores, dtype=np.float64) / tau
    z -= z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def paper_binary_probs(scores: np.ndarray, tau: float) -> np.ndarray:
    """The paper code's ``1 - softmax(S / tau)`` (meaningful for two labels only)."""
    s = np.asarray(scores, dtype=np.float64)
    if s.shape[1] != 2:
        raise ValueError("the paper code's formula is defined for two labels only")
    z = s / tau
    z -= z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return 1.0 - e / e.sum(axis=1, keepdims=True)


def keep_mask(probs: np.ndarray, prompt_labels: np.ndarray, threshold: float,
              drop_disagreeing: bool = True) -> np.ndarray:
    """Boolean ``(N,)``: which texts survive the filter (module docstring)."""
    k = probs.shape[1]
    bar = 1.0 / k + threshold
    hard = probs.argmax(axis=1)
    if drop_disagreeing:
        p_y = probs[np.arange(len(probs)), prompt_labels]
        return (p_y > bar) & (hard == prompt_labels)
    return probs.max(axis=1) > bar


def relabel_arrays(scores: np.ndarray | None, prompt_labels: Sequence[int], n_labels: int,
                   cfg: RelabelConfig) -> dict[str, np.ndarray]:
    """Targets, hard labels, confidences and the keep mask for one batch of texts.

    Args:
        scores: ``(N, K)`` LM scores (lower = more likely); ignored (may be ``None``) for mode ``none``.
        prompt_labels: the label each text was generated with.
        n_labels: ``K``.
        cfg: mode, ``temperature`` (tau_RE), ``threshold`` (T_RE), ``drop_disagreeing``.

    Returns:
        ``probs`` (training targets), ``label`` (hard), ``confidence`` and ``keep``.
    """
    y = np.asarray(prompt_labels, dtype=np.int64)
    eye = np.eye(n_labels)
    if cfg.mode == "none":
        return {
            "probs": eye[y],
            "label": y,
            "confidence": np.ones(len(y)),
            "keep": np.ones(len(y), dtype=bool),
        }
    if scores is None:
        raise ValueError(f"relabel mode {cfg.mode!r} needs scores")
    soft = soft_labels(scores, cfg.temperature)
    hard = soft.argmax(axis=1)
    keep = keep_mask(soft, y, cfg.threshold, cfg.drop_disagreeing)
    probs = soft if cfg.mode == "soft" else eye[hard]
    return {"probs": probs, "label": hard, "confidence": soft.max(axis=1), "keep": keep}


def agreement(scores: np.ndarray, prompt_labels: Sequence[int]) -> float:
    """Share of texts whose best-scoring label (``argmin S``) is the prompt label."""
    y = np.asarray(prompt_labels)
    return float((np.asarray(scores).argmin(axis=1) == y).mean()) if len(y) else float("nan")


# ---------------------------------------------------------------- scoring rows

def score_rows(
    scorer: Scorer, rows: Sequence[Mapping[str, Any]], rule: str, progress: bool = False
) -> np.ndarray:
    """``(N, K)`` scores of generated rows under ``rule``.

    The ``nll`` rule fills each row's own relabel template (its prompt domain's, docs/method.md §2, worded
    for its length class when it has one); the ``verbalizer`` rule uses the scorer's verbalizer template for
    every row.
    """
    if rule not in RULES:
        raise ValueError(f"unknown scoring rule {rule!r}: use one of {', '.join(RULES)}")
    texts = [r["text"] for r in rows]
    if rule == "verbalizer":
        return np.asarray(scorer.scores(texts, rule="verbalizer", progress=progress), dtype=np.float64)
    out: np.ndarray | None = None
    for domain, length in sorted({(r["domain"], r.get("length", "")) for r in rows}):
        idx = [i for i, r in enumerate(rows) if (r["domain"], r.get("length", "")) == (domain, length)]
        template = get_prompt(domain, length).relabel
        part = np.asarray(
            scorer.scores(
                [texts[i] for i in idx], rule="nll", template=template, progress=progress
            ),
            dtype=np.float64,
        )
        if out is None:
            out = np.zeros((len(rows), part.shape[1]))
        out[idx] = part
    return out if out is not None else np.zeros((0, 0))


def choose_rule(scorer: Scorer, rows: Sequence[Mapping[str, Any]], *, rules: Sequence[str] = RULES,
                centre: bool | None = False, progress: bool = False) -> dict[str, Any]:
    """Score a sample with each rule and pick the variant that agrees most often with the prompt labels.

    A variant is a rule, optionally *centred*: ``S - mean(S over the sample)`` per label, which removes a
    label bias of the LM (the sample's prompt labels are balanced by construction, so no real labels are
    used). ``centre=None`` tries both. Returns ``{"rule", "centred", "offset" (K,), "agreement":
    {variant: share}, "sample_size"}``; ties go to ``nll`` (the paper's), then to the uncentred variant.
    """
    y = [r["prompt_label"] for r in rows]
    candidates = []
    for rule in rules:
        scores = score_rows(scorer, rows, rule, progress)
        for centred in ((False, True) if centre is None else (centre,)):
            offset = scores.mean(axis=0) if centred else np.zeros(scores.shape[1])
            share = round(agreement(scores - offset, y), 4)
            candidates.append(((share, rule == "nll", not centred), rule, centred, offset))
    _, rule, centred, offset = max(candidates, key=lambda c: c[0])
    return {"rule": rule, "centred": centred, "offset": [round(float(o), 6) for o in offset],
            "agreement": {f"{r}{' centred' if c else ''}": key[0] for key, r, c, _ in candidates},
            "sample_size": len(rows)}


def relabel_rows(rows: Sequence[Mapping[str, Any]], scores: np.ndarray | None, n_labels: int,
                 cfg: RelabelConfig, *,
                 labeler_scores: Mapping[str, np.ndarray] | None = None) -> list[dict[str, Any]]:
    """Generated rows plus ``scores``, ``probs``, ``label`` (hard), ``confidence`` and ``keep``, and with a
    labeler ensemble each LM's scores (``labeler_scores``: ``{LM: [K scores]}``)."""
    arr = relabel_arrays(scores, [r["prompt_label"] for r in rows], n_labels, cfg)
    out = []
    for i, row in enumerate(rows):
        new = dict(row)
        if scores is not None:
            new["scores"] = [round(float(s), 6) for s in scores[i]]
        new["probs"] = [round(float(p), 6) for p in arr["probs"][i]]
        new["label"] = int(arr["label"][i])
        new["confidence"] = round(float(arr["confidence"][i]), 6)
        new["keep"] = bool(arr["keep"][i])
        if labeler_scores is not None:
            new["labeler_scores"] = {name: [round(float(x), 6) for x in lm_scores[i]]
                                     for name, lm_scores in labeler_scores.items()}
        out.append(new)
    return out
