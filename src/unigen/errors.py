"""Every error a user can cause, under one base class.

The command line catches :class:`UniGenError` once (:func:`unigen.cli.main`) and prints its message as
one line, ``unigen: error: ...``, with exit status 2 and no traceback. So a message names what to fix:
the file and line, the folder, or the setting (``relabel.threshold must be in [0, 1)``). Anything else
that escapes is a bug and keeps its traceback.

Each class also derives from the built-in exception it replaced (``ValueError`` or ``RuntimeError``), so
older ``except ValueError`` code still catches it.
"""

from __future__ import annotations

from typing import Any


def short_repr(value: Any, limit: int = 80) -> str:
    """``repr(value)`` cut to ``limit`` characters, for messages about values from hostile files."""
    try:
        text = repr(value)
    except RecursionError:
        text = f"<deeply nested {type(value).__name__}>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


class UniGenError(Exception):
    """Base class of the errors a user can cause (bad settings, data, folders or models)."""


class ConfigError(UniGenError, ValueError):
    """A setting is unknown, has the wrong type or an invalid value."""


class DataError(UniGenError, ValueError):
    """A data file is missing, unreadable or malformed (the message names the file and line)."""


class StageError(UniGenError, RuntimeError):
    """A stage folder is missing, unfinished, or belongs to another stage or configuration."""


class WorkdirBusy(StageError):
    """Another live process holds the work folder's lock (``<workdir>/.unigen.lock``)."""


class WriteError(UniGenError, OSError):
    """A file could not be written (disk full, read-only folder, no permission); nothing was half-written."""


class GenerationError(UniGenError, RuntimeError):
    """Generation cannot reach its target (e.g. almost every sample is rejected)."""


class ModelNotAvailable(UniGenError, RuntimeError):
    """A model is neither embedded, nor a local folder of the right kind, nor reachable on the Hub."""


class CellsFailed(UniGenError, RuntimeError):
    """Some cells of an experiment raised; every other cell ran and its records were written."""

    def __init__(self, failures: list[str], records: list[dict[str, Any]]):
        super().__init__(f"{len(failures)} cell(s) failed: " + "; ".join(failures))
        self.records = records
