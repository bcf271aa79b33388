"""Loss functions for UniGen task-model training and SunGen weight learning (docs/method.md §5-6).

All functions are pure and stateless; the memory bank and momentum encoder live in
:mod:`unigen.tam.memory`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["reverse_cross_entropy", "soft_cross_entropy", "soft_cross_entropy_per_sample",
           "supervised_contrastive_loss"]


def soft_cross_entropy_per_sample(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """``ce_i = -sum_c t_ic * log softmax(logits_i)_c`` for every row: ``(B, C), (B, C) -> (B,)``.

    SunGen's inner loss and hypergradient weight these per-sample terms (:mod:`unigen.weighting.sungen`).
    """
    return -(targets.to(logits.dtype) * F.log_softmax(logits, dim=-1)).sum(dim=-1)


def soft_cross_entropy(
    logits: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor | None = None
) -> torch.Tensor:
    """Cross-entropy against probability targets, optionally weighted per sample.

    ``ce_i = -sum_c t_ic * log softmax(logits_i)_c`` and the result is ``mean_i w_i * ce_i``
    (plain ``mean_i ce_i`` without weights). The weights are not renormalised, so raw SunGen
    logits (which may be negative, docs/method.md §9) are applied as given.

    Args:
        logits: ``(B, C)`` unnormalised class scores.
        targets: ``(B, C)`` target probabilities (rows sum to 1; one-hot gives ordinary CE).
        weights: optional ``(B,)`` per-sample weights.

    Returns:
        Scalar loss.
    """
    per_sample = soft_cross_entropy_per_sample(logits, targets)
    if weights is not None:
        per_sample = per_sample * weights.to(per_sample.dtype)
    return per_sample.mean()


def _masked_supcon(
    logits: torch.Tensor, pos_mask: torch.Tensor, denom_mask: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-anchor ``-mean_{p in P(i)} (logits_ip - log sum_{a in A(i)} exp logits_ia)``.

    Args:
        logits: ``(B, K)`` similarity / temperature.
        pos_mask: ``(B, K)`` bool, the positives P(i).
        denom_mask: ``(B, K)`` bool, the denominator set A(i).

    Returns:
        ``(per_anchor (B,), valid (B,) bool)``; rows with no positive or an empty denominator are
        invalid and their value is 0 (with a clean, zero gradient).
    """
    logits = logits - logits.max(dim=1, keepdim=True).values.detach()
    denom = (logits.exp() * denom_mask).sum(dim=1, keepdim=True)
    n_pos = pos_mask.sum(dim=1)
    valid = (n_pos > 0) & (denom.squeeze(1) > 0)
    denom = torch.where(valid.unsqueeze(1), denom, torch.ones_like(denom))
    log_prob = logits - denom.log()
    pos_sum = torch.where(pos_mask, log_prob, torch.zeros_like(log_prob)).sum(dim=1)
    per_anchor = -pos_sum / n_pos.clamp_min(1)
    return per_anchor, valid


def supervised_contrastive_loss(
    anchors: torch.Tensor,
    anchor_labels: torch.Tensor,
    bank: torch.Tensor,
    bank_labels: torch.Tensor,
    *,
    temperature: float = 0.2,
    base_temperature: float | None = None,
    code_faithful: bool = False,
) -> torch.Tensor:
    """Supervised contrastive loss (Khosla et al. 2020) over the batch and a memory bank.

    Features are L2-normalised inside: ``z_i = anchors_i / ||anchors_i||``, ``k_m = bank_m / ||bank_m||``.

    **Paper form** (default). For anchor ``i`` the contrast set ``A(i)`` is every other anchor of
    the batch (online features, gradients flow) plus every bank entry (momentum features);
    ``P(i) = {a in A(i) : label_a = label_i}``::

        loss_i = -1/|P(i)| * sum_{p in P(i)} log( exp(z_i.z_p/tau) / sum_{a in A(i)} exp(z_i.z_a/tau) )
        loss   = mean of loss_i over anchors with |P(i)| >= 1

    Anchors without a positive are skipped; if none has one, a zero connected to ``anchors`` is
    returned. With ``base_temperature`` the loss is multiplied by ``tau / base_temperature``.

    **Code-faithful form** (``code_faithful=True``, docs/method.md §9, SCL). The contrast set
    is the bank only (the caller enqueues the current batch's momentum features first). Both
    ``P(i)`` and ``A(i)`` are the same-label bank entries, except that ``A(i)`` also drops column
    ``i`` of the first ``B`` bank columns (which the code assumes is anchor ``i`` itself) while
    ``P(i)`` keeps it. The loss is scaled by ``tau / base_temperature`` with
    ``base_temperature`` defaulting to 1.0 (i.e. by 0.2). *Guard*: the paper code returns NaN for
    the whole batch when some anchor has no same-label bank entry, or when its only one is that
    diagonal entry (empty denominator); here such anchors are skipped instead, so whenever the
    code's result is finite the two agree exactly.

    Args:
        anchors: ``(B, D)`` online projected features.
        anchor_labels: ``(B,)`` integer (hard) labels.
        bank: ``(M, D)`` memory-bank features (``M`` may be 0); treated as constants.
        bank_labels: ``(M,)`` integer labels of the bank entries.
        temperature: ``tau``.
        base_temperature: optional scaling denominator (see above).
        code_faithful: reproduce the paper code's variant.

    Returns:
        Scalar loss.
    """
    batch = anchors.shape[0]
    z = F.normalize(anchors, dim=1)
    k = F.normalize(bank.detach().to(device=z.device, dtype=z.dtype), dim=1)
    labels = anchor_labels.to(z.device).long().view(-1, 1)
    bank_labels = bank_labels.to(z.device).long().view(1, -1)
    eye = torch.eye(batch, dtype=torch.bool, device=z.device)

    if code_faithful:
        logits = z @ k.T / temperature
        pos_mask = labels == bank_labels
        denom_mask = pos_mask.clone()
        n = min(batch, k.shape[0])
        denom_mask[:, :n] &= ~eye[:, :n]
        scale = temperature / (1.0 if base_temperature is None else base_temperature)
    else:
        logits = torch.cat([z @ z.T, z @ k.T], dim=1) / temperature
        not_self = torch.cat([~eye, torch.ones(batch, k.shape[0], dtype=torch.bool, device=z.device)], 1)
        same = torch.cat([labels == labels.T, labels == bank_labels], dim=1)
        denom_mask = not_self
        pos_mask = same & not_self
        scale = 1.0 if base_temperature is None else temperature / base_temperature

    per_anchor, valid = _masked_supcon(logits, pos_mask, denom_mask)
    if not bool(valid.any()):
        return (anchors * 0.0).sum()
    return scale * per_anchor[valid].mean()


def reverse_cross_entropy(logits: torch.Tensor, labels: torch.Tensor, *, a: float = 10.0) -> torch.Tensor:
    """Per-sample noise-robust outer loss of SunGen (docs/method.md §5.2 step 3).

    With ``p = softmax(logits)`` and the smoothed target ``q = softmax(a * onehot(y))``::

        loss_i = -sum_c p_ic * log q_ic

    i.e. reverse cross-entropy with ``log 0`` clipped at about ``-a``: for two classes and
    ``a = 10``, ``-log q_y ~ 4.5e-5`` and ``-log q_{c != y} ~ 10.00005``. A confident correct
    prediction costs ~0, a confident wrong one ~``a``.

    Args:
        logits: ``(B, C)`` unnormalised class scores.
        labels: ``(B,)`` integer labels.
        a: the clip constant ``A``.

    Returns:
        ``(B,)`` per-sample losses (the caller reduces them).
    """
    num_classes = logits.shape[-1]
    onehot = F.one_hot(labels.long().to(logits.device), num_classes).to(logits.dtype)
    log_q = F.log_softmax(a * onehot, dim=-1)
    return -(F.softmax(logits, dim=-1) * log_q).sum(dim=-1)
