r"""The labeler ensemble of the relabel stage (``relabel.labelers``): several causal LMs label every generated
text with their calibrated verbalizer scores, combined per text.

Notation: LMs ``j = 1..M`` (the generator first, then ``relabel.labelers``), LM ``j``'s calibrated verbalizer
score matrix ``S_j`` of shape ``(N, K)`` (lower = more likely; averaged over the prompt variants of
``scoring.verbalizer_extra_*``, :mod:`unigen.synth.scoring`), weights ``w_j >= 0``
(``relabel.labeler_weights``, all 1 by default), ``W = sum_j w_j`` and the relabel temperature ``tau``
(``tau_RE``).

``mean_logprob`` (``relabel.combine``'s default): the weighted mean of the scores, a product of experts whose
soft label is the normalised weighted geometric mean of the LMs' soft labels::

    S[n, k] = sum_j w_j S_j[n, k] / W
    softmax(-S[n] / tau)_k  ∝  prod_j softmax(-S_j[n] / tau)_k ^ (w_j / W)

``mean_prob``: the weighted mean of the LMs' soft labels (a mixture), written back as a score so that the
stage's ``softmax(-S / tau)`` returns exactly that mean::

    p_j[n] = softmax(-S_j[n] / tau),      p[n] = sum_j w_j p_j[n] / W,      S[n, k] = -tau log p[n, k]

(computed with log-sum-exp, so a label no LM believes in gets a large finite score, not infinity).

The LMs' calibrated scores have their own scales: under ``mean_logprob`` an LM that separates the labels by
more nats weighs more; ``relabel.labeler_weights`` rescales an LM by hand. An LM of weight 0 is not run.

Cache: with ``cache_dir`` each LM's scores of a batch of texts are saved, before the next LM runs, as
``<cache_dir>/<LM>/<sha256 of the texts>.npy``; a relabel stage killed between two LMs re-scores only the LMs
that had not finished that shard. The runner deletes the folder when the stage finishes (every row keeps each
LM's scores under ``labeler_scores``, so the ensemble can be re-combined without scoring again).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np

from unigen.config.labeling import COMBINE_RULES
from unigen.files import atomic_write, texts_digest
from unigen.synth.relabeling import Scorer


def _logsumexp(z: np.ndarray, axis: int) -> np.ndarray:
    top = z.max(axis=axis, keepdims=True)
    return np.squeeze(top, axis=axis) + np.log(np.exp(z - top).sum(axis=axis))


def combine_scores(scores: Sequence[np.ndarray], weights: Sequence[float], rule: str,
                   temperature: float) -> np.ndarray:
    """One ``(N, K)`` score matrix from the LMs' ``(N, K)`` matrices (module docstring); weights need not sum
    to 1."""
    if rule not in COMBINE_RULES:
        raise ValueError(f"unknown combination rule {rule!r}: use one of {', '.join(COMBINE_RULES)}")
    if len(scores) != len(weights) or not scores:
        raise ValueError("combine_scores needs one weight per score matrix, and at least one matrix")
    s = np.stack([np.asarray(x, dtype=np.float64) for x in scores])  # (M, N, K)
    w = np.asarray(weights, dtype=np.float64) / float(np.sum(weights))
    if rule == "mean_logprob":
        return np.tensordot(w, s, axes=1)
    z = -s / temperature
    log_p = z - _logsumexp(z, axis=2)[..., None]  # each LM's log soft label
    with np.errstate(divide="ignore"):  # weight 0: log 0 = -inf drops that LM
        log_mean = _logsumexp(log_p + np.log(w)[:, None, None], axis=0)
    return -temperature * log_mean


def cache_folder_name(name: str) -> str:
    """A file-system-safe folder name for an LM name, path or Hub id (readable part + digest)."""
    readable = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._")[-48:]
    return f"{readable}-{hashlib.sha256(name.encode('utf-8')).hexdigest()[:8]}"


class LabelerEnsemble:
    """A :class:`~unigen.synth.relabeling.Scorer` whose verbalizer scores combine several LMs' (module
    docstring).

    Args:
        members: ``(name, scorer)`` per LM, the generator first; a scorer may be given as a function that
            builds it, called on first use (so an LM whose scores are all cached is never loaded).
        combine: ``mean_logprob`` or ``mean_prob``.
        temperature: ``tau_RE`` (used by ``mean_prob``).
        weights: one per member (``None``: all 1).
        cache_dir: where each LM's scores are cached per batch of texts (``None``: no cache).
    """

    def __init__(self, members: Sequence[tuple[str, Scorer | Callable[[], Scorer]]], *,
                 combine: str = "mean_logprob", temperature: float = 0.1,
                 weights: Sequence[float] | None = None, cache_dir: str | Path | None = None):
        self.names = tuple(name for name, _ in members)
        weights = tuple(float(w) for w in weights) if weights else (1.0,) * len(self.names)
        if len(weights) != len(self.names) or len(set(self.names)) != len(self.names):
            raise ValueError("a labeler ensemble needs distinct member names and one weight per member")
        if combine not in COMBINE_RULES:
            raise ValueError(f"unknown combination rule {combine!r}: use one of {', '.join(COMBINE_RULES)}")
        self.weights = dict(zip(self.names, weights))
        self.combine_rule, self.temperature = combine, temperature
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self._members: dict[str, Scorer | Callable[[], Scorer]] = dict(members)

    @property
    def active(self) -> tuple[str, ...]:
        """The members that are run: those of positive weight."""
        return tuple(n for n in self.names if self.weights[n] > 0)

    def scorer(self, name: str) -> Scorer:
        """Member ``name``'s scorer, built on first use."""
        member = self._members[name]
        if not hasattr(member, "scores"):
            member = self._members[name] = member()  # type: ignore[operator]
        return member  # type: ignore[return-value]

    def cache_path(self, name: str, texts: Sequence[str]) -> Path | None:
        if self.cache_dir is None:
            return None
        return self.cache_dir / cache_folder_name(name) / f"{texts_digest(texts)}.npy"

    def member_scores(self, texts: Sequence[str], progress: bool = False) -> dict[str, np.ndarray]:
        """``{name: (N, K) calibrated verbalizer scores}`` of every active member (cached ones read back)."""
        out: dict[str, np.ndarray] = {}
        for name in self.active:
            path = self.cache_path(name, texts)
            if path is not None and path.is_file():
                out[name] = np.load(path)
                continue
            scores = np.asarray(self.scorer(name).scores(list(texts), rule="verbalizer", progress=progress),
                                dtype=np.float64)
            if path is not None:
                atomic_write(path, lambda f, s=scores: np.save(f, s))
            out[name] = scores
        return out

    def combine(self, member_scores: Mapping[str, np.ndarray]) -> np.ndarray:
        """The ensemble's ``(N, K)`` scores from :meth:`member_scores`."""
        names = self.active
        return combine_scores([member_scores[n] for n in names], [self.weights[n] for n in names],
                              self.combine_rule, self.temperature)

    def scores(self, texts: Sequence[str], *, rule: str | None = None, template: str | None = None,
               progress: bool = False) -> np.ndarray:
        """The combined verbalizer scores (the :class:`~unigen.synth.relabeling.Scorer` interface)."""
        if rule not in (None, "verbalizer"):
            raise ValueError(f"the labeler ensemble scores with the verbalizer rule only, not {rule!r}")
        return self.combine(self.member_scores(texts, progress))
