"""A task model of either backend loaded for inference, as ``unigen predict`` and ``unigen serve`` load it:
a PyTorch task-model folder (or train stage folder) or an ONNX export, with the device checked first.

    from unigen.inference import load_model

    model = load_model("onnx/")              # LoadedModel: .backend "onnx" | "pytorch", .labels, .info
    model.classify(["Great battery.", ""])   # the format of unigen.predictions
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from unigen.errors import UniGenError
from unigen.predictions import classify

__all__ = ["LoadedModel", "check_device", "is_onnx", "load_model"]


def check_device(device: str) -> str:
    """``device`` checked before any work: ``auto`` (CUDA when PyTorch sees a GPU, else CPU), ``cpu``,
    ``cuda``, ``cuda:N`` or ``mps``, each only if this machine has it; otherwise a one-line
    :class:`UniGenError`."""
    if device == "cpu":
        return device
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError):
        raise UniGenError(f"--device {device!r} is not a device: use auto, cpu, cuda, cuda:N or "
                          "mps") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise UniGenError(f"--device {device}: PyTorch sees no CUDA GPU on this machine "
                              f"(torch {torch.__version__}); use --device cpu")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise UniGenError(f"--device {device}: this machine has {torch.cuda.device_count()} CUDA GPU(s), "
                              f"numbered from 0")
        return device
    if dev.type == "mps":
        if not torch.backends.mps.is_available():
            raise UniGenError(f"--device {device}: PyTorch has no MPS (Apple GPU) here; use --device cpu")
        return device
    raise UniGenError(f"--device {device}: task models run on cpu, cuda or mps")


class LoadedModel:
    """A task model of either backend with what the server tells about it.

    Args:
        model: anything with ``labels`` and ``predict_proba(texts, batch_size=...) -> (N, C)``.
        backend: ``"pytorch"`` or ``"onnx"``.
        info: architecture, encoder, max_length, quantization, parameters.
        card: the ``README.md`` model card text, if any.
    """

    def __init__(self, model: Any, backend: str, info: dict[str, Any], card: str | None) -> None:
        self.model = model
        self.backend = backend
        self.info = info
        self.card = card
        self.labels = tuple(model.labels)
        self._lock = threading.Lock() if backend == "pytorch" else None  # predict_proba toggles eval mode

    def predict_proba(self, texts: list[str], *, batch_size: int = 64) -> Any:
        if self._lock is None:
            return self.model.predict_proba(texts, batch_size=batch_size)
        with self._lock:
            return self.model.predict_proba(texts, batch_size=batch_size)

    def classify(self, texts: str | Sequence[str], *, batch_size: int = 64
                 ) -> dict[str, Any] | list[dict[str, Any]]:
        """:func:`prediction` of each text (empty texts get no label)."""
        return classify(lambda t: self.predict_proba(t, batch_size=batch_size), self.labels, texts)


def is_onnx(path: str | Path) -> bool:
    from unigen.export.onnx_model import is_onnx_folder  # numpy only

    return is_onnx_folder(path)


def load_model(path: str | Path, *, device: str = "cpu") -> LoadedModel:
    """Load a PyTorch task-model folder (or train stage folder) or an exported ONNX folder. ``device`` is
    checked (:func:`check_device`); an ONNX export runs on the CPU only."""
    path = Path(path)
    if is_onnx(path):
        from unigen.export.onnx_model import ONNX_CONFIG, OnnxTaskModel

        if device not in ("auto", "cpu"):
            raise UniGenError(f"--device {device}: {path} is an ONNX export, which runs on the CPU (ONNX "
                              "Runtime's CPU provider); leave out --device or serve the PyTorch model folder")
        model: Any = OnnxTaskModel.from_pretrained(path)
        record = json.loads((path / ONNX_CONFIG).read_text(encoding="utf-8"))
        backend, folder = "onnx", path
    else:
        device = check_device(device)
        from unigen.tam.model import CONFIG_NAME, TaskModel  # torch

        model = TaskModel.from_pretrained(path, device=device)
        folder = path if (path / CONFIG_NAME).is_file() else path / "model"
        record = json.loads((folder / CONFIG_NAME).read_text(encoding="utf-8"))
        record.setdefault("parameters", sum(p.numel() for p in model.parameters()))
        backend = "pytorch"
    info = {k: record.get(k) for k in ("architecture", "encoder", "max_length", "pooling", "parameters")}
    info["quantization"] = record.get("quantization")
    card_file = folder / "README.md"
    card = card_file.read_text(encoding="utf-8") if card_file.is_file() else None
    return LoadedModel(model, backend, info, card)
