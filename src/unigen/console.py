"""What a run prints besides its results: one-line warnings and progress bars (the one helper for each)."""

from __future__ import annotations

import sys
from typing import Any


def warn(message: str) -> None:
    """One ``unigen: warning: ...`` line on stderr (a problem the run recovers from by itself)."""
    print(f"unigen: warning: {' '.join(message.split())}", file=sys.stderr, flush=True)


def progress_bar(total: int | None, desc: str, enabled: bool, *, initial: int = 0, unit: str = "sample",
                 **options: Any) -> Any:
    """A tqdm bar (a no-op one when ``enabled`` is false, i.e. with ``--quiet``); ``iterable=`` wraps a
    loop, other ``options`` go to tqdm."""
    from tqdm.auto import tqdm

    options = {"dynamic_ncols": True, "smoothing": 0.1, **options}
    return tqdm(total=total, initial=initial, desc=desc, unit=unit, disable=not enabled, **options)
