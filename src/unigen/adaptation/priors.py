r"""Label-free estimates of a domain's class prior, and the logit offset that moves a task model's decision
threshold to it (pure numpy; the runner is :mod:`unigen.adaptation.stage`).

Notation: ``N`` unlabeled texts of the user's domain, ``K`` classes, the task model's logits ``f(x)``
``(N, K)`` and probabilities ``p_s(y|x) = softmax(f(x))``, the LM's calibrated-verbalizer probabilities
``q(y|x)`` on a seeded sample of the texts, and the prior of the synthetic rows the task model was trained
on, ``pi_s`` (from its training record; uniform when unknown).

Estimators of the target prior ``pi_t`` (``adapt.prior``):

* ``lm``: the calibrated verbalizer's predicted share, ``pi_t(k) = mean_x [argmax_j q(j|x) = k]``.
* ``model_em``: EM of Saerens, Latinne & Decaestecker (2002), on ``p_s(y|x) = softmax(f(x) / T)``::

      p_t(k|x) = (pi_t(k) / pi_s(k)) p_s(k|x) / sum_j (pi_t(j) / pi_s(j)) p_s(j|x)
      pi_t(k) <- mean_x p_t(k|x)                                   (from pi_t = pi_s, until it settles)

  It is the maximum-likelihood prior **only when** ``p_s`` is calibrated on the source and only the prior
  moved (``p(x|y)`` the same in both domains). Neither holds here, which is why it failed in
  results/quality.md (59.8 against 71.6 unadapted): the task model is trained on the LM's soft labels
  and is over-confident on real texts, and the domain moves ``p(x|y)``, not only ``p(y)``; a model that
  calls a domain 80% negative with probabilities near 1 is a fixed point that EM only sharpens (each
  iteration re-weights towards the class already favoured). ``T > 1`` (``adapt.em_temperature``)
  softens the probabilities, the cheap half of the bias-corrected calibration that Alexandari et al.
  (2020) found EM needs; without target labels ``T`` cannot be fitted, so it stays a candidate.
* ``agreement``: the share of each class among the texts on which the LM and the task model (its own
  argmax) agree, ``pi_t(k) = #{x: a(x) = b(x) = k} / #{x: a(x) = b(x)}``. Two labelers with different
  biases (the task model says "negative" too often where the LM says "positive" too often, results/
  quality.md and issue 26) err in opposite directions; the texts both label alike are the ones both are
  sure of, and their share sits between the two biased shares. When fewer than ``min_agree`` texts agree,
  the LM's share is used.
* ``balanced``: ``pi_t = 1/K`` (the "median score" diagnostic of results/quality.md: 78.6 against 71.6);
  ``none``: no estimate, the threshold stays.

The threshold move (:func:`logit_offset`) is an offset ``delta`` ``(K,)`` added to every text's logits,
``f'(x) = f(x) + delta``, so that the argmax shares of ``f'`` on the texts match ``pi_t``: for ``K = 2``
exactly (``delta = (0, -t)`` with ``t`` midway between the ``n_1``-th and ``n_1 + 1``-th largest margin
``f_1 - f_0``, ``n_1 = round(pi_t(1) N)``); for ``K > 2`` by the fixed point ``delta_k += log(pi_t(k) /
share_k)`` on the softmax shares. The runner adds ``delta`` to the classifier's output bias, so the
adapted model applies it on every backend (PyTorch, ONNX export, the server) with no new file format.
"""

from __future__ import annotations

import numpy as np

__all__ = ["PRIORS", "agreement_prior", "em_prior", "estimate_prior", "hard_share", "logit_offset", "softmax"]

PRIORS = ("agreement", "lm", "model_em", "balanced", "none")
#: fewer agreeing texts than this: the agreement prior falls back to the LM's share
MIN_AGREE = 10


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64) / temperature
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def hard_share(probs_or_logits: np.ndarray) -> np.ndarray:
    """Share of the texts whose argmax is each class, ``(K,)``."""
    arr = np.asarray(probs_or_logits)
    return np.bincount(arr.argmax(axis=1), minlength=arr.shape[1]) / max(1, len(arr))


def em_prior(probs: np.ndarray, source_prior: np.ndarray, *, iterations: int = 100,
             tol: float = 1e-6) -> np.ndarray:
    """Saerens et al. (2002) EM estimate of the target prior (module docstring)."""
    probs = np.asarray(probs, dtype=np.float64)
    source = np.asarray(source_prior, dtype=np.float64)
    prior = source.copy()
    for _ in range(iterations):
        w = probs * (prior / source)
        w /= w.sum(axis=1, keepdims=True)
        new = w.mean(axis=0)
        if np.abs(new - prior).max() < tol:
            return new
        prior = new
    return prior


def agreement_prior(model_labels: np.ndarray, lm_labels: np.ndarray, num_labels: int,
                    min_agree: int = MIN_AGREE) -> np.ndarray:
    """Class shares among the texts both labelers label alike (the LM's share when too few agree)."""
    a, b = np.asarray(model_labels), np.asarray(lm_labels)
    agree = a == b
    if agree.sum() < min_agree:
        return np.bincount(b, minlength=num_labels) / max(1, len(b))
    return np.bincount(a[agree], minlength=num_labels) / agree.sum()


def estimate_prior(method: str, *, model_logits: np.ndarray, lm_probs: np.ndarray | None,
                   lm_index: np.ndarray | None, source_prior: np.ndarray, em_temperature: float = 1.0,
                   em_iterations: int = 100) -> np.ndarray | None:
    """``pi_t`` by ``method`` (one of :data:`PRIORS`; ``None`` for ``none``). ``lm_probs`` are the LM's
    probabilities of the texts ``lm_index`` (rows of ``model_logits``)."""
    k = model_logits.shape[1]
    if method == "none":
        return None
    if method == "balanced":
        return np.full(k, 1.0 / k)
    if method == "model_em":
        return em_prior(softmax(model_logits, em_temperature), source_prior, iterations=em_iterations)
    if lm_probs is None or lm_index is None or len(lm_probs) == 0:
        raise ValueError(f"the {method} prior needs the LM's labels")
    if method == "lm":
        return hard_share(lm_probs)
    if method == "agreement":
        return agreement_prior(model_logits[lm_index].argmax(axis=1), lm_probs.argmax(axis=1), k)
    raise ValueError(f"unknown prior {method!r}: use one of {', '.join(PRIORS)}")


def logit_offset(logits: np.ndarray, prior: np.ndarray, *, iterations: int = 500) -> np.ndarray:
    """The offset ``delta`` ``(K,)`` whose ``logits + delta`` predict the shares ``prior`` (module
    docstring)."""
    logits = np.asarray(logits, dtype=np.float64)
    prior = np.clip(np.asarray(prior, dtype=np.float64), 0.0, 1.0)
    n, k = logits.shape
    delta = np.zeros(k)
    if n == 0:
        return delta
    if k == 2:
        margin = np.sort(logits[:, 1] - logits[:, 0])[::-1]
        n1 = int(round(prior[1] * n))
        if n1 <= 0:
            threshold = margin[0] + 1.0
        elif n1 >= n:
            threshold = margin[-1] - 1.0
        else:
            threshold = (margin[n1 - 1] + margin[n1]) / 2.0
        delta[1] = -threshold
        return delta
    target = np.clip(prior, 1e-6, None) / np.clip(prior, 1e-6, None).sum()
    for _ in range(iterations):
        share = softmax(logits + delta).mean(axis=0)
        delta += np.log(target / np.clip(share, 1e-12, None))
        delta -= delta.mean()
    return delta
