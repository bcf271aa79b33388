"""Denoising memory bank and momentum encoder for UniGen's contrastive loss (docs/method.md §6.2-6.3)."""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

__all__ = ["MemoryBank", "gate_mask", "make_momentum_copy", "momentum_update"]


class MemoryBank:
    """Fixed-capacity FIFO buffer of ``(feature (D,), label)`` pairs.

    Rows are appended in order; once more than ``capacity`` are held the oldest are dropped.
    Features are stored detached, on the bank's device and dtype.

    Args:
        capacity: maximum number of entries (paper: 64).
        dim: feature size ``D``.
        device: where the contents live (default CPU).
        dtype: feature dtype.
    """

    def __init__(
        self,
        capacity: int,
        dim: int,
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        if capacity <= 0 or dim <= 0:
            raise ValueError("capacity and dim must be positive")
        self.capacity = capacity
        self.dim = dim
        self._features = torch.empty(0, dim, device=device, dtype=dtype)
        self._labels = torch.empty(0, dtype=torch.long, device=device)

    @property
    def features(self) -> torch.Tensor:
        """``(N, D)`` current features, oldest first (``(0, D)`` when empty)."""
        return self._features

    @property
    def labels(self) -> torch.Tensor:
        """``(N,)`` long labels, aligned with :attr:`features`."""
        return self._labels

    def __len__(self) -> int:
        return self._features.shape[0]

    def reset(self) -> None:
        """Empty the bank."""
        self._features = self._features[:0]
        self._labels = self._labels[:0]

    def push(
        self, features: torch.Tensor, labels: torch.Tensor, keep_mask: torch.Tensor | None = None
    ) -> None:
        """Enqueue the rows of ``features`` (``(B, D)``) / ``labels`` (``(B,)``) where ``keep_mask``
        (``(B,)`` bool; ``None`` keeps all) is true, then keep only the newest ``capacity`` rows."""
        if features.ndim != 2 or features.shape[1] != self.dim:
            raise ValueError(f"expected features of shape (B, {self.dim}), got {tuple(features.shape)}")
        if labels.shape != (features.shape[0],):
            raise ValueError("labels must have shape (B,)")
        feats = features.detach().to(device=self._features.device, dtype=self._features.dtype)
        labs = labels.detach().to(device=self._labels.device, dtype=torch.long)
        if keep_mask is not None:
            keep = keep_mask.to(device=self._features.device, dtype=torch.bool)
            feats, labs = feats[keep], labs[keep]
        self._features = torch.cat([self._features, feats])[-self.capacity :]
        self._labels = torch.cat([self._labels, labs])[-self.capacity :]

    def state_dict(self) -> dict[str, Any]:
        """A checkpointable copy of the bank (tensors on CPU)."""
        return {
            "capacity": self.capacity,
            "dim": self.dim,
            "features": self._features.detach().cpu().clone(),
            "labels": self._labels.cpu().clone(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore contents saved by :meth:`state_dict` (capacity and dim must match)."""
        if state["capacity"] != self.capacity or state["dim"] != self.dim:
            raise ValueError(
                f"bank shape mismatch: saved ({state['capacity']}, {state['dim']}), "
                f"this bank ({self.capacity}, {self.dim})"
            )
        feats, labs = state["features"], state["labels"]
        if feats.shape[0] != labs.shape[0] or feats.shape[0] > self.capacity:
            raise ValueError("inconsistent memory-bank state")
        self._features = feats.to(device=self._features.device, dtype=self._features.dtype).clone()
        self._labels = labs.to(device=self._labels.device, dtype=torch.long).clone()


@torch.no_grad()
def momentum_update(online: nn.Module, momentum_model: nn.Module, m: float) -> None:
    """EMA update of the momentum encoder (He et al. 2020), in place.

    For every parameter ``theta_k <- m * theta_k + (1 - m) * theta_q`` (``q`` = online,
    ``k`` = momentum model); buffers (e.g. BatchNorm statistics) are copied from the online model.
    ``m = 0`` copies the online weights, ``m = 1`` leaves the momentum model unchanged.

    Args:
        online: the trained model ``q``.
        momentum_model: the model ``k`` with the same parameter and buffer names.
        m: momentum in ``[0, 1]`` (paper: 0.999).
    """
    if not 0.0 <= m <= 1.0:
        raise ValueError(f"momentum must be in [0, 1], got {m}")
    q_params = dict(online.named_parameters())
    k_params = dict(momentum_model.named_parameters())
    if q_params.keys() != k_params.keys():
        raise ValueError("online and momentum models have different parameters")
    for name, k in k_params.items():
        k.mul_(m).add_(q_params[name].detach(), alpha=1.0 - m)
    q_buffers = dict(online.named_buffers())
    for name, buf in momentum_model.named_buffers():
        buf.copy_(q_buffers[name])


def make_momentum_copy(model: nn.Module) -> nn.Module:
    """A deep copy of ``model`` with ``requires_grad=False`` on every parameter (paper initialisation)."""
    clone = copy.deepcopy(model)
    clone.requires_grad_(False)
    return clone


def gate_mask(weights: torch.Tensor | None, threshold: float, batch_size: int | None = None) -> torch.Tensor:
    """The denoising gate: a ``(B,)`` bool mask, true where ``weights > threshold``.

    Args:
        weights: ``(B,)`` per-sample SunGen weights, or ``None`` (gate off: all true).
        threshold: ``T_MB`` (paper: 0.8).
        batch_size: ``B``, needed only when ``weights`` is ``None``.
    """
    if weights is None:
        if batch_size is None:
            raise ValueError("batch_size is required when weights is None")
        return torch.ones(batch_size, dtype=torch.bool)
    return weights > threshold
