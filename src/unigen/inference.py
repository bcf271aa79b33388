"""A task model of either backend loaded for inference, as ``unigen predict`` and ``unigen serve`` load it:
a PyTorch task-model folder (or train stage folder) or an ONNX export, with the device and the precision
checked first.

    from unigen.inference import load_model

    model = load_model("onnx/")              # LoadedModel: .backend "onnx" | "pytorch", .labels, .info
    model.classify(["Great battery.", ""])   # the format of unigen.predictions
    load_model("runs/default/04_train/<fp>", precision="bf16").precision   # "bf16": bfloat16 autocast
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from unigen.errors import UniGenError
from unigen.predictions import classify

__all__ = ["PRECISIONS", "LoadedModel", "check_device", "is_onnx", "load_model", "model_architecture",
           "model_precision"]

#: ``--precision`` of ``unigen predict`` and ``unigen serve``, ``precision=`` of :func:`load_model`
PRECISIONS = ("auto", "fp32", "bf16")


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
        info: architecture, encoder, max_length, quantization, parameters, precision.
        card: the ``README.md`` model card text, if any.
        precision: ``"fp32"``, or ``"bf16"``: ``model`` runs under bfloat16 autocast (also
            ``info["precision"]``).
    """

    def __init__(self, model: Any, backend: str, info: dict[str, Any], card: str | None,
                 precision: str = "fp32") -> None:
        self.model = model
        self.backend = backend
        self.precision = precision
        self.info = {**info, "precision": precision}
        self.card = card
        self.labels = tuple(model.labels)
        self._lock = threading.Lock() if backend == "pytorch" else None  # predict_proba toggles eval mode

    @property
    def numerics(self) -> str:
        """How the model computes, for the start-up and report lines: ``bf16 autocast``, ``fp32``, or the
        quantization of a quantized export (``int8``)."""
        if self.precision == "bf16":
            return "bf16 autocast"
        return str(self.info.get("quantization") or self.precision)

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


def model_architecture(path: str | Path) -> str:
    """``lstm`` or ``transformer``, from a task-model (or train stage) folder's ``unigen_tam.json`` (no
    torch); ``transformer`` when it cannot be read (loading the model then says what is wrong with it)."""
    path = Path(path)
    record = path / "unigen_tam.json"
    if not record.is_file():
        record = path / "model" / "unigen_tam.json"  # a train stage folder
    try:
        return str(json.loads(record.read_text(encoding="utf-8")).get("architecture", "transformer"))
    except (OSError, ValueError, AttributeError):
        return "transformer"


def model_precision(path: str | Path, precision: str = "auto", device: str = "cpu") -> str:
    """``precision`` (:data:`PRECISIONS`) resolved for the model at ``path`` on ``device`` (already checked):
    ``"fp32"`` or ``"bf16"``, read from the folder without loading the model.

    ``auto``: bf16 autocast for a PyTorch transformer where the device computes bf16 natively
    (:func:`unigen.tam.autocast.bf16_by_default`; MPNet-base: the float32 label on 99.9% of 2,100 real test
    texts at 2.9x the texts/s, results/serving.md), else fp32. An explicit ``bf16`` runs on any device for a
    transformer (emulated, and then slower than fp32, where the device lacks native bf16); for an LSTM or an
    ONNX export, which run in float32 only, it is a one-line :class:`UniGenError`, as is an unknown value.
    """
    if precision not in PRECISIONS:
        raise UniGenError(f"--precision {precision!r}: use {', '.join(PRECISIONS)}")
    from unigen.tam.autocast import bf16_by_default  # no torch

    if is_onnx(path):
        kind = "an ONNX export"
    elif model_architecture(path) == "lstm":
        kind = "an LSTM task model"
    else:
        return ("bf16" if bf16_by_default("transformer", device) else "fp32") if precision == "auto" \
            else precision
    if precision == "bf16":
        raise UniGenError(f"--precision bf16: {path} is {kind}, which runs in float32 only; leave out "
                          "--precision (bf16 autocast is for PyTorch transformer task models)")
    return "fp32"


def load_model(path: str | Path, *, device: str = "cpu", precision: str = "auto") -> LoadedModel:
    """Load a PyTorch task-model folder (or train stage folder) or an exported ONNX folder. ``device`` is
    checked (:func:`check_device`); an ONNX export runs on the CPU only. ``precision`` (``auto`` | ``fp32``
    | ``bf16``) is resolved by :func:`model_precision`: ``auto`` is bf16 autocast for a PyTorch transformer
    on a device with native bf16, else fp32; an explicit ``bf16`` works on any device for a transformer
    (only slower where bf16 is emulated) and is a one-line :class:`UniGenError` for an LSTM or an ONNX
    export. The result's ``.precision`` (and ``.info["precision"]``) says which ran."""
    path = Path(path)
    if is_onnx(path):
        from unigen.export.onnx_model import ONNX_CONFIG, OnnxTaskModel

        if device not in ("auto", "cpu"):
            raise UniGenError(f"--device {device}: {path} is an ONNX export, which runs on the CPU (ONNX "
                              "Runtime's CPU provider); leave out --device or serve the PyTorch model folder")
        resolved = model_precision(path, precision, "cpu")
        model: Any = OnnxTaskModel.from_pretrained(path)
        record = json.loads((path / ONNX_CONFIG).read_text(encoding="utf-8"))
        backend, folder = "onnx", path
    else:
        device = check_device(device)
        resolved = model_precision(path, precision, device)
        from unigen.tam.autocast import AutocastModel
        from unigen.tam.model import CONFIG_NAME, TaskModel  # torch

        task_model = TaskModel.from_pretrained(path, device=device)
        folder = path if (path / CONFIG_NAME).is_file() else path / "model"
        record = json.loads((folder / CONFIG_NAME).read_text(encoding="utf-8"))
        record.setdefault("parameters", sum(p.numel() for p in task_model.parameters()))
        model = AutocastModel(task_model) if resolved == "bf16" else task_model
        backend = "pytorch"
    info = {k: record.get(k) for k in ("architecture", "encoder", "max_length", "pooling", "parameters")}
    info["quantization"] = record.get("quantization")
    card_file = folder / "README.md"
    card = card_file.read_text(encoding="utf-8") if card_file.is_file() else None
    return LoadedModel(model, backend, info, card, resolved)
