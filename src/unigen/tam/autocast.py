"""bfloat16 autocast for task-model predictions: when it is the default (:func:`bf16_by_default`, the rule of
``train.precision``, ``evaluate.engine`` and ``unigen predict`` / ``unigen serve`` ``--precision`` alike) and
a task model whose predictions run under it (:class:`AutocastModel`). Torch loads only when a model predicts.
"""

from __future__ import annotations

from typing import Any

from unigen.registry import native_bf16

__all__ = ["AutocastModel", "bf16_by_default"]


def bf16_by_default(architecture: str, device: str) -> bool:
    """Whether ``auto`` precision means bf16 autocast for a task model of ``architecture`` (``lstm``, or
    ``transformer`` / an encoder name) on ``device``: a transformer on a device with native bf16
    (:func:`unigen.registry.native_bf16`). The LSTM stays float32 (bf16 gives it 1.3x at most: not worth
    it), and so does a device that would only emulate bf16 (slower than float32)."""
    return architecture != "lstm" and native_bf16(device)


class AutocastModel:
    """A :class:`~unigen.tam.model.TaskModel` whose predictions run under ``torch.autocast`` in bfloat16
    (matrix products in bf16, accumulation and softmax in float32)."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self.labels = model.labels

    def predict_proba(self, texts: Any, *, batch_size: int = 64) -> Any:
        import torch

        with torch.autocast(self.model.device.type, dtype=torch.bfloat16):
            return self.model.predict_proba(texts, batch_size=batch_size)
