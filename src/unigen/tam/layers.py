"""Transformer layers dropped from a task model: the teacher-made student of ``adapt.student=teacher``
(:meth:`unigen.tam.model.TaskModel.with_layers` is the entry point; this module is its body)."""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
from torch import nn

__all__ = ["keep_layers", "kept_layer_indices"]


def keep_layers(model: Any, n: int) -> Any:
    """:meth:`~unigen.tam.model.TaskModel.with_layers` (its docstring has the contract) of the task model
    ``model``; the copy is built from ``model``'s own classes (no import of :mod:`unigen.tam.model`)."""
    if model.spec.architecture != "transformer":
        raise ValueError("with_layers: only a transformer task model has layers to drop (this is an "
                         "LSTM)")
    total = int(model.num_layers or 0)
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or not 1 <= n <= total:
        raise ValueError(f"with_layers: n must be an integer from 1 to the encoder's {total} layers; "
                         f"got {n!r}")
    from transformers import AutoModel

    hf = model.encoder.model
    prefix = _layer_list_name(hf, total)
    kept = kept_layer_indices(total, int(n))
    config = copy.deepcopy(hf.config)
    config.num_hidden_layers = int(n)
    dtype = next(hf.parameters()).dtype
    small = AutoModel.from_config(config, dtype=dtype)
    source = hf.state_dict()
    depth = prefix.count(".") + 1
    state = {}
    for key in small.state_dict():
        parts = key.split(".")
        if key.startswith(prefix + ".") and parts[depth].isdigit():
            parts[depth] = str(kept[int(parts[depth])])
        state[key] = source[".".join(parts)]
    small.load_state_dict(state, strict=True)
    clone = type(model)(model.spec, type(model.encoder)(small, model.encoder.pooling),
                       copy.deepcopy(model.tokenizer))
    clone.projection.load_state_dict(model.projection.state_dict())
    clone.classifier.load_state_dict(model.classifier.state_dict())
    return clone.to(model.device).train(model.training)


def kept_layer_indices(total: int, n: int) -> list[int]:
    """The ``n`` of ``total`` layers :meth:`TaskModel.with_layers` keeps: ``round(i * (total - 1) / (n - 1))``
    for ``i < n``, evenly spaced, the first and the last included (``n = 1``: only the last)."""
    if not 1 <= n <= total:
        raise ValueError(f"keep 1 to {total} layers, not {n}")
    if n == 1:
        return [total - 1]
    return [round(i * (total - 1) / (n - 1)) for i in range(n)]


def _layer_list_name(model: nn.Module, total: int) -> str:
    """The name of the Hugging Face encoder's list of ``total`` layers (``encoder.layer`` for BERT-style
    models and MPNet, ``transformer.layer`` for DistilBERT)."""
    found = [name for name, module in model.named_modules()
             if isinstance(module, nn.ModuleList) and len(module) == total
             and name.rsplit(".", 1)[-1] in ("layer", "layers")]
    if len(found) != 1:
        raise ValueError(f"with_layers: the layer list of {type(model).__name__} was not found "
                         f"({len(found)} candidates)")
    return found[0]
