r"""Pseudo-labels for the user's texts and their selection (pure numpy; the runner is
:mod:`unigen.adaptation.stage`).

Inputs, for the texts of the pool (the LM-labelled sample, or every text when no LM is used): the task
model's probabilities ``p(y|x)`` **after** the threshold move (:mod:`unigen.adaptation.priors`), the LM's
calibrated-verbalizer probabilities ``q(y|x) = softmax(-S(x) / tau_RE)`` (the labeler the task model learnt
from, at the relabel temperature), and the estimated prior ``pi_t``.

Labels and confidences (``adapt.pseudo_labels``):

* ``model``: ``y = argmax p``, ``c = max p``;  ``lm``: ``y = argmax q``, ``c = max q``;
* ``agreement``: only texts with ``argmax p = argmax q``; ``y`` that class, ``c = (p_y + q_y) / 2``;
* ``confidence``: ``r = (p + q) / 2``, ``y = argmax r``, ``c = max r``.

Selection (self-training's usual guard against confirmation bias, e.g. class-balanced self-training of
Zou et al. 2018, and the prior-matched selection of FixMatch-style methods): ``n = min(max_pseudo,
round(select_fraction * pool))`` texts, ``n_k = round(pi_t(k) n)`` of class ``k``, the ``n_k`` most
confident texts labelled ``k``. When a class has fewer candidates than ``n_k``, every ``n_j`` is scaled by
the same factor, so the selected rows keep the prior's proportions.

Training rows: the selected texts with one-hot (``targets = hard``) or ``r``/``p``/``q`` (``soft``) targets,
plus ``round(synthetic_ratio * n)`` rows drawn (seeded) from the model's own synthetic training rows, so
the model keeps what it learnt (no drift towards its own errors on the new domain).
"""

from __future__ import annotations

import numpy as np

__all__ = ["PSEUDO_LABELS", "mix_rows", "pseudo_labels", "select_per_class"]

PSEUDO_LABELS = ("agreement", "confidence", "model", "lm")


def pseudo_labels(how: str, model_probs: np.ndarray, lm_probs: np.ndarray | None
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(labels (N,), confidence (N,), usable (N,) bool, soft targets (N, K))`` (module docstring)."""
    p = np.asarray(model_probs, dtype=np.float64)
    if how == "model":
        return p.argmax(1), p.max(1), np.ones(len(p), dtype=bool), p
    if lm_probs is None:
        raise ValueError(f"pseudo_labels={how} needs the LM's probabilities")
    q = np.asarray(lm_probs, dtype=np.float64)
    if how == "lm":
        return q.argmax(1), q.max(1), np.ones(len(q), dtype=bool), q
    r = (p + q) / 2.0
    if how == "confidence":
        return r.argmax(1), r.max(1), np.ones(len(r), dtype=bool), r
    if how == "agreement":
        labels = p.argmax(1)
        usable = labels == q.argmax(1)
        return labels, r[np.arange(len(r)), labels], usable, r
    raise ValueError(f"unknown pseudo_labels {how!r}: use one of {', '.join(PSEUDO_LABELS)}")


def select_per_class(labels: np.ndarray, confidence: np.ndarray, usable: np.ndarray, prior: np.ndarray,
                     n_select: int) -> np.ndarray:
    """Indices (ascending) of the most confident usable texts per class, in the proportions of ``prior``."""
    labels, confidence, usable = np.asarray(labels), np.asarray(confidence), np.asarray(usable, dtype=bool)
    prior = np.asarray(prior, dtype=np.float64)
    prior = prior / prior.sum()
    wanted = np.round(prior * n_select).astype(int)
    available = np.array([int(((labels == k) & usable).sum()) for k in range(len(prior))])
    scale = min([1.0] + [available[k] / wanted[k] for k in range(len(prior)) if wanted[k] > 0])
    counts = np.floor(wanted * scale + 1e-9).astype(int)
    chosen: list[np.ndarray] = []
    for k, count in enumerate(counts):
        idx = np.flatnonzero((labels == k) & usable)
        order = idx[np.argsort(-confidence[idx], kind="stable")]
        chosen.append(order[:count])
    return np.sort(np.concatenate(chosen)) if chosen else np.zeros(0, dtype=int)


def mix_rows(texts: list[str], targets: np.ndarray, synthetic: tuple[list[str], np.ndarray] | None,
             ratio: float, seed: int) -> tuple[list[str], np.ndarray, int]:
    """The pseudo-labelled rows plus ``round(ratio * len(texts))`` synthetic rows (a seeded draw, all of
    them when there are fewer); returns ``(texts, targets, synthetic rows used)``."""
    if synthetic is None or ratio <= 0 or not synthetic[0]:
        return list(texts), np.asarray(targets, dtype=np.float32), 0
    syn_texts, syn_targets = synthetic
    n = min(len(syn_texts), int(round(ratio * len(texts))))
    pick = np.sort(np.random.default_rng(seed).permutation(len(syn_texts))[:n])
    out_texts = list(texts) + [syn_texts[i] for i in pick]
    out_targets = np.concatenate([np.asarray(targets, dtype=np.float32),
                                  np.asarray(syn_targets, dtype=np.float32)[pick]])
    return out_texts, out_targets, n
