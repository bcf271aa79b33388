"""What a test needs that may be missing: under ``CI=true`` a capability the project installs itself (its
``dev`` extra, the embedded models, root for a tmpfs) must be there, so its absence fails the test; elsewhere
the test is skipped, saying why."""

from __future__ import annotations

import importlib
import os
from types import ModuleType

import pytest

IN_CI = os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def missing(reason: str, *, installed_by_ci: bool = True) -> None:
    """Skip the test (``reason`` says what is missing), or fail it under ``CI=true`` when CI installs it."""
    if IN_CI and installed_by_ci:
        pytest.fail(f"CI=true and {reason}: CI installs this (scripts/setup.sh --dev), so it must be there")
    pytest.skip(reason)


def need(module: str, reason: str | None = None) -> ModuleType:
    """``import module``, or :func:`missing` (``pytest.importorskip`` that fails under ``CI=true``). At the
    top of a module it covers the whole module: keep the tests that do not need ``module`` in another one."""
    try:
        return importlib.import_module(module)
    except ImportError:
        missing(reason or f"{module} is not installed (pip install -e '.[dev]')")
        raise  # not reached
