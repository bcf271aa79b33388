"""UniGen: universal zero-shot dataset generation for cross-domain sentiment classification.

Heavy modules (torch, transformers) load lazily, so ``import unigen`` and ``unigen --help`` are fast.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "load_config": "unigen.config",
    "UniGenConfig": "unigen.config",
    "TaskModel": "unigen.tam",
    "load_dataset": "unigen.data",
    "evaluate_classifier": "unigen.evaluate",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'unigen' has no attribute {name!r}")


__all__ = sorted(_LAZY) + ["__version__"]
