"""``unigen export --format onnx``: a task model as one ONNX graph, token ids -> class probabilities.

The exported folder (loaded by :class:`unigen.export.onnx_model.OnnxTaskModel`)::

    model.onnx          inputs  input_ids, attention_mask  int64 (batch, sequence), right-padded
                        output  probabilities              float32 (batch, num_labels), softmax of the logits
    unigen_onnx.json    labels, architecture, token limit, tokenizer kind, padding id, quantization, ...
    tokenizer.json      the Hugging Face fast tokenizer (transformer models), or
    vocab.json          the word vocabulary (LSTM models)
    README.md           the model card (the source folder's, or a new one) with a section on the export

Both axes of both inputs are dynamic. The LSTM encoder runs over packed sequences in PyTorch, which ONNX
cannot express; the graph computes the same final states from padded inputs instead
(:class:`MaskedBiLSTM`): the forward direction's state at each row's last real token, and the backward
direction's state after reading each row's real tokens in reverse (the row reversed within its length).

``quantize="int8"`` applies ONNX Runtime's dynamic quantization (int8 weights, one scale per output
channel; activations quantized per batch at run time) by :func:`int8_plan`. LSTM models: the MatMul,
Gather and LSTM operators. Transformer models: the encoder's MatMuls, except the quarter of them whose
quantization alone changes the log-probabilities most on synthetic calibration sentences
(:func:`sensitive_linears` on :data:`CALIBRATION_TEXTS`; in MiniLM-L6 the FFN layers and value projections
of the first layers), which stay float32 with the embeddings and the head. On the trained MiniLM-L6 task
model (2,100 real test texts, 300 of each set, 128 tokens) that gives PyTorch's label on 99.2% of the
texts at 1.13x float32 ONNX's texts/s, against 97.7% at 1.5x when every MatMul is int8
(results/serving.md).
"""

from __future__ import annotations

import json
import logging
import tempfile
import warnings
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from unigen import __version__
from unigen.errors import ModelNotAvailable, UniGenError
from unigen.export.onnx_model import ONNX_CONFIG, ONNX_FORMAT, ONNX_FORMAT_VERSION, OnnxTaskModel
from unigen.files import atomic_write_text, sha256_file
from unigen.tam.lstm import LSTMEncoder
from unigen.tam.model import TaskModel
from unigen.tam.model_card import model_card

__all__ = ["ONNX_NAME", "MaskedBiLSTM", "ProbabilityGraph", "check_export", "export_onnx"]

ONNX_NAME = "model.onnx"
OPSET = 18
QUANTIZATIONS = ("int8",)
#: sentences the export checks its graph on (ONNX Runtime against PyTorch)
CHECK_TEXTS = (
    "I absolutely loved this movie, it was wonderful!",
    "Terrible product, it broke after one day.",
    "ok",
    "The food was cold and the waiter was rude, but the dessert saved the evening somewhat.",
    "",
    "Best purchase I have made all year, highly recommend it to anyone who cooks.",
)


class MaskedBiLSTM(nn.Module):
    """The sentence vector of :class:`~unigen.tam.lstm.LSTMEncoder` without packed sequences.

    ``h = [h_fwd; h_bwd]`` with ``h_fwd`` the forward LSTM's output at each row's last real token
    (padding sits after it, so it never enters) and ``h_bwd`` the backward weights run forward over
    the row reversed within its length, read at the same position. Shares the encoder's parameters.
    """

    def __init__(self, encoder: LSTMEncoder) -> None:
        super().__init__()
        lstm = encoder.lstm
        self.embedding = encoder.embedding
        self.hidden_size = lstm.hidden_size
        self.forward_lstm = nn.LSTM(lstm.input_size, lstm.hidden_size, batch_first=True)
        self.backward_lstm = nn.LSTM(lstm.input_size, lstm.hidden_size, batch_first=True)
        for name in ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"):
            setattr(self.forward_lstm, name, getattr(lstm, name))
            setattr(self.backward_lstm, name, getattr(lstm, f"{name}_reverse"))
        self.output_dim = encoder.output_dim

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        x = self.embedding(input_ids)  # (B, L, E)
        last = (attention_mask.sum(dim=1).clamp(min=1) - 1).unsqueeze(1)  # (B, 1): index of the last token
        steps = torch.arange(input_ids.shape[1], device=input_ids.device).unsqueeze(0)  # (1, L)
        order = torch.where(steps <= last, last - steps, steps)  # each row reversed within its length
        reversed_x = torch.gather(x, 1, order.unsqueeze(-1).expand(-1, -1, x.shape[-1]))
        at_last = last.unsqueeze(-1).expand(-1, 1, self.hidden_size)  # (B, 1, H)
        h_fwd = torch.gather(self.forward_lstm(x)[0], 1, at_last).squeeze(1)
        h_bwd = torch.gather(self.backward_lstm(reversed_x)[0], 1, at_last).squeeze(1)
        return torch.cat([h_fwd, h_bwd], dim=-1)


#: sentences the int8 export measures each layer's sensitivity to quantization on: synthetic, written for
#: this purpose, none from a test set; reviews of several domains and lengths, two past 128 tokens
CALIBRATION_TEXTS = CHECK_TEXTS + (
    "A gripping story with wonderful performances; I was moved to tears by the ending.",
    "The plot made no sense and the acting was wooden from start to finish.",
    "Not bad at all, though the middle drags a little.",
    "great phone, the battery lasts two days and the screen is gorgeous",
    "Returned it after a week: the charger stopped working and support never answered.",
    "The pasta was fresh, the service friendly, and the prices fair. We will be back!",
    "Overpriced, noisy and the steak came out raw. Avoid.",
    "meh. it does what it says, nothing more.",
    "@friend just watched it and WOW, what a film!!! 10/10",
    "worst customer service ever, waited 2 hours on hold #fail",
    "The camera takes sharp pictures in daylight but struggles in low light.",
    "I can't recommend this hotel enough: spotless rooms, a helpful staff and a great breakfast.",
    "It's the kind of movie that makes you wish you had stayed home and read a book instead.",
    "Five stars. Works exactly as described and arrived early.",
    "The soundtrack is lovely, yet the script feels lazy and the jokes fall flat.",
    "Cheap plastic, flimsy buttons, and the left speaker crackles.",
    "an unexpectedly tender and funny film about growing old",
    "The delivery was late and the soup was cold, but the driver apologised.",
    "Love it! So easy to set up and my kids use it every day.",
    "Dull, predictable and far too long.",
    " ".join(["The first half is charming and well acted, the second half loses its way, and by the end I "
              "no longer cared what happened to anyone on screen."] * 5),
    " ".join(["I bought this blender for smoothies and it crushes ice in seconds, cleans easily, and is "
              "quieter than my old one."] * 4),
)
#: share of the transformer encoder's Linear layers that the int8 export keeps in float32: the most
#: sensitive ones to int8 dynamic quantization, measured on :data:`CALIBRATION_TEXTS`
KEEP_FLOAT_SHARE = 0.25


def _fake_int8(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """``linear(x)`` as ONNX Runtime's dynamic quantization computes it: the input with one uint8 scale and
    zero point for the whole tensor, the weight with one symmetric int8 scale per output channel."""
    lo, hi = min(float(x.min()), 0.0), max(float(x.max()), 0.0)
    scale = (hi - lo) / 255 or 1.0
    zero = round(-lo / scale)
    xq = (torch.clamp(torch.round(x / scale) + zero, 0, 255) - zero) * scale
    wscale = weight.abs().amax(dim=1, keepdim=True).clamp(min=1e-12) / 127
    wq = torch.clamp(torch.round(weight / wscale), -127, 127) * wscale
    return nn.functional.linear(xq, wq, bias)


def sensitive_linears(model: TaskModel, texts: tuple[str, ...] | list[str] = CALIBRATION_TEXTS
                      ) -> list[tuple[str, nn.Linear, float]]:
    """The Linear layers of a transformer task model's encoder, most sensitive first: ``(name, module,
    mean absolute change of the log-probabilities on texts when only that layer is int8)``."""
    graph = ProbabilityGraph(model).eval()
    linears = [(n, m) for n, m in graph.encoder.named_modules() if isinstance(m, nn.Linear)]
    enc = model.encode(list(texts))
    with torch.no_grad():
        base = torch.log(graph(enc["input_ids"], enc["attention_mask"]).clamp(min=1e-12))
        out = []
        for name, linear in linears:
            handle = linear.register_forward_hook(lambda m, inp, _o: _fake_int8(inp[0], m.weight, m.bias))
            try:
                probs = graph(enc["input_ids"], enc["attention_mask"])
            finally:
                handle.remove()
            out.append((name, linear, float((torch.log(probs.clamp(min=1e-12)) - base).abs().mean())))
    return sorted(out, key=lambda t: -t[2])


def _matmul_nodes_of(path: Path, linears: list[nn.Linear]) -> list[str]:
    """Names of the MatMul nodes in the ONNX graph at ``path`` that multiply by these layers' weights."""
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(path)).graph
    weights = {t.name: t for t in graph.initializer}
    wanted = [m.weight.detach().numpy().T for m in linears]
    names = []
    for node in graph.node:
        if node.op_type != "MatMul" or node.input[1] not in weights:
            continue
        value = numpy_helper.to_array(weights[node.input[1]])
        if any(value.shape == w.shape and np.array_equal(value, w) for w in wanted):
            names.append(node.name)
    return names


class ProbabilityGraph(nn.Module):
    """What is exported: ``(input_ids, attention_mask)`` -> ``softmax(logits)`` of a :class:`TaskModel`."""

    def __init__(self, model: TaskModel) -> None:
        super().__init__()
        lstm = isinstance(model.encoder, LSTMEncoder)
        self.encoder = MaskedBiLSTM(model.encoder) if lstm else model.encoder
        self.projection = model.projection
        self.classifier = model.classifier

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        logits = self.classifier(self.projection(self.encoder(input_ids, attention_mask)))
        return torch.softmax(logits.float(), dim=-1)


def _tokenizer_record(model: TaskModel, output: Path) -> dict[str, Any]:
    """Write the tokenizer beside the graph; returns what
    :class:`unigen.export.onnx_model.OnnxTaskModel` needs."""
    if model.spec.architecture == "lstm":
        model.tokenizer.save(output / "vocab.json")
        return {"kind": "words", "file": "vocab.json", "pad_id": 0}
    backend = getattr(model.tokenizer, "backend_tokenizer", None)
    if backend is None:
        raise ModelNotAvailable(f"{model.spec.encoder}: a slow (Python) tokenizer cannot be exported; "
                                "the ONNX model needs a fast tokenizer (tokenizer.json)")
    backend.save(str(output / "tokenizer.json"))
    pad_id = model.tokenizer.pad_token_id
    return {"kind": "tokenizers", "file": "tokenizer.json",
            "pad_id": int(pad_id if pad_id is not None else 0),
            "pad_token": model.tokenizer.pad_token or model.tokenizer.convert_ids_to_tokens(int(pad_id or 0))}


def export_graph(model: TaskModel, path: Path, opset: int) -> None:
    """Trace :class:`ProbabilityGraph` into ``path`` with dynamic batch and sequence axes."""
    graph = ProbabilityGraph(model).eval()
    example = model.encode(["an example text to trace", "short", "a third and somewhat longer example"])
    inputs = (example["input_ids"], example["attention_mask"])
    axes = {"input_ids": {0: "batch", 1: "sequence"}, "attention_mask": {0: "batch", 1: "sequence"},
            "probabilities": {0: "batch"}}
    # The TorchScript exporter: it traces the padded-batch graph in seconds and needs no onnxscript. Its
    # warnings (deprecation, tracer notes on shape checks, the LSTM's batch-size note) concern code paths
    # the tests cover (every batch size and length), so they are not shown to the user.
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(graph, inputs, str(path), input_names=["input_ids", "attention_mask"],
                          output_names=["probabilities"], dynamic_axes=axes, opset_version=opset,
                          dynamo=False)


def int8_plan(model: TaskModel, path: Path, keep_float_share: float | None = None) -> dict[str, Any]:
    """What :func:`quantize_graph` does to the graph at ``path``: ``{"recipe", "op_types", "per_channel",
    "nodes_to_quantize", "kept_float"}``.

    LSTM models: every operator ONNX Runtime can quantize dynamically (LSTM, Gather, MatMul), per-channel.
    Transformer models: only the encoder's MatMuls with weights, per-channel, except the
    ``keep_float_share`` most sensitive of them (:func:`sensitive_linears` on the synthetic
    :data:`CALIBRATION_TEXTS`), which stay float32, as do the embeddings and the head."""
    if model.spec.architecture == "lstm":
        return {"recipe": "dynamic", "op_types": None, "per_channel": True, "nodes_to_quantize": None,
                "kept_float": []}
    share = KEEP_FLOAT_SHARE if keep_float_share is None else keep_float_share
    ranked = sensitive_linears(model)
    cut = round(share * len(ranked))
    return {"recipe": "dynamic-matmul-sensitive-float", "op_types": ["MatMul"], "per_channel": True,
            "nodes_to_quantize": _matmul_nodes_of(path, [m for _, m, _ in ranked[cut:]]),
            "kept_float": [name for name, _, _ in ranked[:cut]]}


def quantize_graph(path: Path, plan: dict[str, Any]) -> None:
    """Replace ``path`` by its int8 dynamic quantization (ONNX Runtime's ``quantize_dynamic``) by ``plan``
    (:func:`int8_plan`)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # its advice to pre-process first (the symbolic shape inference fails here)
    try:
        with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
            quantized = Path(tmp) / path.name
            quantize_dynamic(str(path), str(quantized), weight_type=QuantType.QInt8,
                             per_channel=plan["per_channel"], op_types_to_quantize=plan["op_types"],
                             nodes_to_quantize=plan["nodes_to_quantize"])
            quantized.replace(path)
    finally:
        root.setLevel(level)


def check_export(model: TaskModel, folder: Path, texts: tuple[str, ...] = CHECK_TEXTS) -> dict[str, float]:
    """Probabilities of ``texts`` from the exported folder against PyTorch's: max abs difference and
    the share of equal predictions."""
    ours = OnnxTaskModel.from_pretrained(folder).predict_proba(list(texts))
    theirs = model.predict_proba(list(texts))
    return {"max_abs_diff": float(np.abs(ours - theirs).max()),
            "agreement": float((ours.argmax(1) == theirs.argmax(1)).mean())}


def export_onnx(model: TaskModel | str | Path, output: str | Path, *, quantize: str | None = None,
                opset: int = OPSET, check: bool = True) -> Path:
    """Export a task model (or a model / train stage folder) to ``output``; returns the folder.

    Args:
        model: a :class:`TaskModel` or a folder :meth:`TaskModel.from_pretrained` reads.
        output: the export folder (created; files of the same names are replaced).
        quantize: ``None`` (float32) or ``"int8"`` (dynamic quantization).
        opset: the ONNX opset.
        check: run ONNX Runtime on a few sentences and record the largest probability difference from
            PyTorch in ``unigen_onnx.json`` (``check``).
    """
    if quantize is not None and quantize not in QUANTIZATIONS:
        raise UniGenError(f"unknown quantization {quantize!r}: use one of {', '.join(QUANTIZATIONS)}")
    source = None
    if not isinstance(model, TaskModel):
        source = Path(model)
        model = TaskModel.from_pretrained(source)
        if not (source / "unigen_tam.json").is_file():
            source = source / "model"
    model = model.cpu().eval()
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    export_graph(model, output / ONNX_NAME, opset)
    plan = None
    if quantize == "int8":
        plan = int8_plan(model, output / ONNX_NAME)
        quantize_graph(output / ONNX_NAME, plan)
    spec = model.spec
    record: dict[str, Any] = {
        "format": ONNX_FORMAT, "format_version": ONNX_FORMAT_VERSION, "unigen_version": __version__,
        "model": ONNX_NAME, "inputs": ["input_ids", "attention_mask"], "output": "probabilities",
        "opset": opset, "quantization": quantize,
        **({"int8": {k: plan[k] for k in ("recipe", "kept_float")}} if plan else {}),
        "architecture": spec.architecture, "encoder": spec.encoder,
        "labels": list(spec.labels), "max_length": spec.max_length, "pooling": spec.pooling,
        "parameters": int(sum(p.numel() for p in model.parameters())),
        "tokenizer": _tokenizer_record(model, output),
    }
    record["sha256"] = {name: sha256_file(output / name) for name in (ONNX_NAME, record["tokenizer"]["file"])}
    card = None
    if source is not None:
        saved = json.loads((source / "unigen_tam.json").read_text(encoding="utf-8"))
        if "training" in saved:
            record["training"] = saved["training"]
        if (source / "README.md").is_file():
            card = (source / "README.md").read_text(encoding="utf-8")
    if check:
        atomic_write_text(output / ONNX_CONFIG, json.dumps(record, indent=2))
        record["check"] = check_export(model, output)
    atomic_write_text(output / ONNX_CONFIG, json.dumps(record, indent=2))
    if card is None:
        card = model_card({**asdict(spec), **record}, parameters=record["parameters"])
    atomic_write_text(output / "README.md", card.rstrip("\n") + "\n\n" + _export_section(record) + "\n")
    return output


def _export_section(record: dict[str, Any]) -> str:
    """The model card's section about this export."""
    how = "int8 dynamic quantization of the weights" if record["quantization"] else "float32"
    kept = (record.get("int8") or {}).get("kept_float")
    if kept:
        how += f"; {len(kept)} layers most sensitive to it kept float32"
    check = record.get("check")
    checked = (f" Checked against PyTorch on {len(CHECK_TEXTS)} sentences: largest probability difference "
               f"{check['max_abs_diff']:.1e}, same label on {100 * check['agreement']:.0f}%."
               if check else "")
    return (f"## ONNX export\n\n`{record['model']}` ({how}, opset {record['opset']}): inputs `input_ids` "
            "and `attention_mask` (int64, batch x sequence, right-padded), output `probabilities` (float32, "
            f"batch x {len(record['labels'])}, in label order).{checked} It needs only onnxruntime, numpy "
            "and tokenizers:\n\n```python\nfrom unigen import OnnxTaskModel\n\n"
            "model = OnnxTaskModel.from_pretrained(\"THIS_FOLDER\")\n"
            "model.predict([\"What a lovely film.\", \"Never again.\"])\n```")
