"""The work-folder lock: one unigen process per work folder (``<workdir>/.unigen.lock``).

:func:`workdir_lock` is an ``flock`` that the kernel releases when its holder dies, holding the owner's pid
for the message a second process prints.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from unigen.console import warn
from unigen.errors import WorkdirBusy
from unigen.files import write_failed

LOCK_NAME = ".unigen.lock"

# ---------------------------------------------------------------- the work-folder lock

_HELD_LOCKS: dict[str, tuple[int, int]] = {}  # resolved folder -> (fd, depth): re-entrant in one process


def _lock_owner(fd: int) -> dict[str, Any]:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        data = json.loads(os.read(fd, 65536).decode("utf-8") or "{}")
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _pid_alive(pid: Any) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def workdir_lock(workdir: str | Path, *, wait: bool = False,
                 log: Callable[[str], None] | None = None) -> Iterator[Path]:
    """Hold ``<workdir>/.unigen.lock`` for the block: one process per work folder.

    The lock is an ``flock`` on the file, which the kernel releases when its holder dies (SIGKILL, out of
    memory), so the lock of a dead process is taken over at once; the file holds the owner's pid, host and
    command for the message. A second process raises :class:`~unigen.errors.WorkdirBusy` (one line, naming
    the pid), or with ``wait`` blocks until the folder is free. The same process may nest the lock (``unigen
    experiment`` runs pipelines in its folder).
    """
    import fcntl

    workdir = Path(workdir)
    key = str(workdir.resolve())
    if key in _HELD_LOCKS:
        fd, depth = _HELD_LOCKS[key]
        _HELD_LOCKS[key] = (fd, depth + 1)
        try:
            yield workdir / LOCK_NAME
        finally:
            fd, depth = _HELD_LOCKS[key]
            _HELD_LOCKS[key] = (fd, depth - 1)
        return
    path = workdir / LOCK_NAME
    try:
        workdir.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise write_failed(path, exc) from exc
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = _lock_owner(fd)
            who = (f"pid {owner.get('pid', '?')} on {owner.get('host', '?')}, "
                   f"since {owner.get('started', '?')}")
            if not wait:
                raise WorkdirBusy(
                    f"{workdir} is in use by another unigen process ({who}): wait for it to finish, pass "
                    "--wait to queue behind it, or use another --workdir") from None
            (log or warn)(f"{workdir} is in use by another unigen process ({who}); waiting for it")
            fcntl.flock(fd, fcntl.LOCK_EX)
        previous = _lock_owner(fd)
        if previous.get("pid") and previous.get("host") == socket.gethostname() \
                and not _pid_alive(previous["pid"]):
            (log or warn)(f"{path}: took over the lock of pid {previous['pid']}, which is no longer running")
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                 "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
                                 "command": " ".join(sys.argv)[:500]}).encode("utf-8"))
        _HELD_LOCKS[key] = (fd, 1)
        try:
            yield path
        finally:
            del _HELD_LOCKS[key]
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)  # the file stays (deleting a lock file races with its next taker)
    finally:
        os.close(fd)
