"""UniGen: universal zero-shot dataset generation for cross-domain sentiment classification.

The pipeline, top to bottom: :mod:`unigen.config` -> :mod:`unigen.synth` (stages 1-2: generate, relabel)
-> :mod:`unigen.weighting` (stage 3) -> :mod:`unigen.tam` (stage 4: the task model) ->
:mod:`unigen.evaluation` (stage 5), tied together by :mod:`unigen.stages` and :mod:`unigen.pipeline`.

Heavy modules (torch, transformers) load lazily, so ``import unigen`` and ``unigen --help`` are fast.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "load_config": "unigen.config",
    "UniGenConfig": "unigen.config",
    "UniGenError": "unigen.errors",
    "run_pipeline": "unigen.pipeline",
    "adapt": "unigen.adaptation.stage",
    "TaskModel": "unigen.tam.model",
    "OnnxTaskModel": "unigen.export.onnx_model",
    "load_model": "unigen.inference",
    "load_dataset": "unigen.evaluation.datasets",
    "evaluate_classifier": "unigen.evaluation.evaluate",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'unigen' has no attribute {name!r}")


__all__ = sorted(_LAZY) + ["__version__"]
