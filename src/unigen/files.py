"""File helpers every stage shares, standard library only: atomic writes, sha256, JSONL and text reading.

* :func:`atomic_write` and :func:`atomic_folder` are the only ways files are written; a write that fails
  (disk full, read-only folder) removes its temporary and raises :class:`~unigen.errors.WriteError`. Files
  get the mode the umask gives a new file (0644 under umask 022), not the temporary file's 0600.
* :func:`sha256_file` is the one file hash (manifests, the model registry, converted models).
* :func:`iter_jsonl` is the one JSONL reader (bounded lines, errors that name the file and line).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, BinaryIO

from unigen.errors import DataError, WriteError

MANIFEST = "manifest.json"
TMP_PREFIX = ".tmp-"
#: files a stage re-renders after it is finished (cards, the evaluation beside a model): not hashed
UNHASHED_NAMES = frozenset({MANIFEST, "evaluation.json"})
UNHASHED_SUFFIXES = (".md",)
#: the longest JSONL line read (bounded memory on hostile files); longer lines are a DataError
MAX_LINE_BYTES = 64 << 20


def write_failed(path: Path, exc: OSError) -> WriteError:
    reason = exc.strerror or str(exc)
    return WriteError(f"{path}: cannot be written ({reason}); nothing was half-written: free space or make "
                      "the folder writable, then run again")


def _fsync_dir(folder: Path) -> None:
    """Persist a rename in ``folder`` (best effort: not every file system lets a folder be opened)."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def current_umask() -> int:
    """The process's umask, read without changing it where Linux allows (``/proc/self/status``), else by
    setting and restoring it."""
    with contextlib.suppress(OSError, ValueError):
        with open("/proc/self/status", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def new_file_mode() -> int:
    """The mode :func:`open` gives a new file under the current umask (0o644 under umask 022)."""
    return 0o666 & ~current_umask()


def atomic_write(path: str | Path, write: Callable[[BinaryIO], Any]) -> None:
    """The one atomic writer: ``write(f)`` fills a temporary file in the same folder, which is flushed,
    fsynced and moved onto ``path`` with :func:`os.replace`; on any error the temporary file is removed.

    A reader therefore sees the old file or the new one, never a half-written one. A failing write (disk
    full, read-only folder, no permission) raises :class:`~unigen.errors.WriteError` naming ``path``. The
    file gets the mode a plain ``open`` would give it under the umask (0644 under umask 022), not the
    temporary file's 0600, so a model folder copied for a service running as another user stays readable.
    """
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f"{TMP_PREFIX}{path.name}.")
        os.fchmod(fd, new_file_mode())
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        tmp = None
    except OSError as exc:
        raise write_failed(path, exc) from exc
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)


@contextlib.contextmanager
def atomic_folder(path: str | Path, last: str | None = None) -> Iterator[Path]:
    """Fill a folder atomically file by file: the block writes into a fresh temporary folder beside
    ``path``, whose files are then fsynced and moved into ``path`` with :func:`os.replace` (``last``, a
    file name, moves last: the record that vouches for the others). On any error the temporary folder is
    removed and ``path`` keeps only whole files; an :class:`OSError` becomes
    :class:`~unigen.errors.WriteError`. The files get the mode the umask gives a new file (as
    :func:`atomic_write`)."""
    path = Path(path)
    tmp: Path | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f"{TMP_PREFIX}{path.name}."))
        yield tmp
        files = sorted((p for p in tmp.rglob("*") if p.is_file()), key=lambda p: (p.name == last, str(p)))
        mode = new_file_mode()  # as a plain open would give them (some writers, safetensors, make 0600)
        for p in files:
            with open(p, "rb") as f:
                os.fchmod(f.fileno(), mode)
                os.fsync(f.fileno())
        for p in files:
            target = path / p.relative_to(tmp)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(p, target)
        _fsync_dir(path)
    except OSError as exc:
        raise write_failed(path, exc) from exc
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def publish_folder(target: str | Path) -> Iterator[Path]:
    """Build a whole folder and publish it at ``target`` in one rename: the block fills the yielded path (a
    folder it creates, beside ``target``), which then moves onto ``target`` with :func:`os.replace`. A folder
    another process published there first is kept. On any error the temporary folder is removed, so
    ``target`` is either absent or whole (the model cache: converted and unpacked models)."""
    target = Path(target)
    tmp: Path | None = None
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f"{TMP_PREFIX}{target.name}."))
        yield tmp / "folder"
        try:
            os.replace(tmp / "folder", target)
        except OSError:
            if not (target.is_dir() and any(target.iterdir())):  # not another process's finished folder
                raise
    except OSError as exc:
        raise write_failed(target, exc) from exc
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    atomic_write(path, lambda f: f.write(text.encode("utf-8")))


def atomic_write_json(path: str | Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=1, ensure_ascii=False, default=str) + "\n")


def write_jsonl_atomic(path: str | Path, rows: Iterable[Mapping[str, Any]]) -> int:
    """Write rows as JSON lines, atomically; returns the number of rows."""
    lines = [json.dumps(r, ensure_ascii=False) for r in rows]
    atomic_write_text(path, "".join(line + "\n" for line in lines))
    return len(lines)


def atomic_torch_save(obj: Any, path: str | Path) -> None:
    """``torch.save(obj)`` to ``path`` atomically (checkpoints and resumable state)."""
    import torch  # only the stages that checkpoint need torch

    atomic_write(path, lambda f: torch.save(obj, f))


_SHA256_MEMO: dict[tuple[str, int, int, int], str] = {}


def update_sha256(digest: Any, path: str | Path) -> Any:
    """Feed a file's bytes into ``digest`` (a :func:`hashlib.sha256` object) in 4 MiB blocks; returns it."""
    with open(path, "rb") as f:
        while block := f.read(1 << 22):
            digest.update(block)
    return digest


def texts_digest(texts: Iterable[str]) -> str:
    """sha256 (64 hex digits) of a list of texts, order and boundaries included: the key under which a
    batch of texts' scores is kept (the relabel stage's labeler cache, ``unigen adapt``'s LM scores)."""
    return hashlib.sha256(json.dumps(list(texts), ensure_ascii=False).encode("utf-8")).hexdigest()


def sha256_file(path: str | Path) -> str:
    """sha256 (64 hex digits) of a file's bytes; remembered per (path, inode, size, mtime) in this process,
    so verifying the same unchanged file twice reads it once."""
    path = Path(path)
    st = path.stat()
    key = (str(path.resolve()), st.st_ino, st.st_size, st.st_mtime_ns)
    if key not in _SHA256_MEMO:
        _SHA256_MEMO[key] = update_sha256(hashlib.sha256(), path).hexdigest()
    return _SHA256_MEMO[key]


def file_digest(path: str | Path) -> str:
    """sha256 (12 hex digits) of a file's bytes: the upstream identity of a data file given by hand."""
    try:
        return sha256_file(path)[:12]
    except OSError as exc:
        raise DataError(f"{path}: cannot be read ({exc.strerror})") from None


def hashed_files(folder: str | Path) -> dict[str, str]:
    """``{relative path: sha256}`` of the files under ``folder`` a manifest vouches for: every file but the
    manifest, cards (``*.md``), ``evaluation.json`` and leftovers of interrupted writes (``.tmp-*``)."""
    folder = Path(folder)
    out = {}
    for p in sorted(folder.rglob("*")):
        rel = p.relative_to(folder)
        if (not p.is_file() or p.name in UNHASHED_NAMES or p.name.endswith(UNHASHED_SUFFIXES)
                or any(part.startswith(TMP_PREFIX) for part in rel.parts)):
            continue
        out[rel.as_posix()] = sha256_file(p)
    return out


def verify_files(folder: str | Path, recorded: Mapping[str, str], *,
                 extra_in: Iterable[str] = ()) -> list[str]:
    """Problems of ``folder`` against ``recorded`` sha256s: missing or changed files, and files under the
    subfolders ``extra_in`` that are not recorded; empty when everything matches."""
    folder = Path(folder)
    problems = []
    for rel, digest in recorded.items():
        p = folder / rel
        if not p.is_file():
            problems.append(f"{rel} is missing")
        elif sha256_file(p) != digest:
            problems.append(f"{rel} does not match its sha256 (truncated or edited)")
    for sub in extra_in:
        for p in sorted((folder / sub).glob("*")):
            rel = p.relative_to(folder).as_posix()
            if p.is_file() and not p.name.startswith(TMP_PREFIX) and rel not in recorded:
                problems.append(f"{rel} is not in the manifest")
    return problems


def check_unicode(text: str, where: str) -> str:
    """``text`` if it can be written as UTF-8; JSON escapes can make unpaired surrogates, which cannot."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise DataError(f"{where}: the text holds an unpaired surrogate ({text[exc.start]!r} at character "
                        f"{exc.start + 1}), which is not Unicode text") from None
    return text


def read_jsonl(path: str | Path) -> Iterator[dict[str, Any]]:
    """Stream the rows of one JSONL file (errors as :func:`iter_jsonl`)."""
    for _, row in iter_jsonl(path):
        yield row


def iter_jsonl(path: str | Path) -> Iterator[tuple[str, Any]]:
    """``("path:line", value)`` for every non-empty line of a JSONL file.

    A UTF-8 byte-order mark and CRLF line ends are accepted. A missing or unreadable file, invalid UTF-8,
    invalid JSON, JSON nested too deeply and a line over :data:`MAX_LINE_BYTES` raise :class:`DataError`
    naming the file and line.
    """
    try:
        f = open(path, "rb")  # decoded line by line, so an encoding error names its line
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise DataError(f"{path}: is a folder, not a file") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot be read ({exc.strerror})") from None
    with f:
        lineno = 0
        while raw := f.readline(MAX_LINE_BYTES + 1):
            lineno += 1
            where = f"{path}:{lineno}"
            if len(raw) > MAX_LINE_BYTES:
                raise DataError(f"{where}: line longer than {MAX_LINE_BYTES >> 20} MiB")
            if lineno == 1:
                raw = raw.removeprefix(b"\xef\xbb\xbf")  # a UTF-8 byte-order mark
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise DataError(f"{where}: not valid UTF-8 (byte {exc.start + 1} of the line)") from None
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"{where}: not valid JSON ({exc.msg})") from None
            except RecursionError:
                raise DataError(f"{where}: JSON nested too deeply") from None
            yield where, value
