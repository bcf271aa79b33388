"""The on-disk contract of the pipeline stages: the stage table, stage folders, manifests, atomic files.

The five stages, in order (:data:`STAGES`; the folder names and versions are part of every cached run)::

    generate  01_generate   synthetic texts from prompts                  unigen.synth.generate
    relabel   02_relabel    soft labels from the generator, the filter     unigen.synth.relabel
    weight    03_weight     SunGen sample weights, top-K selection         unigen.weighting.stage
    train     04_train      task model (CE + SCL, denoising memory bank)   unigen.tam.stage
    evaluate  05_evaluate   metrics on the real test sets                  unigen.evaluation.stage

Every stage runner starts with :func:`open_stage` (fingerprint its settings, open or create its folder)
and returns at once when the folder is already complete.

Layout of one stage run::

    <workdir>/<NN_stage>/<fingerprint>/
        manifest.json            stage, fingerprint, config subset, upstream fingerprints, seed,
                                 counts, timings, versions, status (running | complete)
        shards/shard-00000.jsonl one JSON object per line; present = complete (written atomically)
        shards/shard-00000.stats.json   optional per-shard statistics, written before the shard
        datacard.md              optional human-readable summary

The fingerprint is :func:`unigen.config.fingerprint` of the stage name, its version, the
output-affecting settings and the upstream stages' fingerprints, so a changed setting gets a new
folder and a finished folder is reused as is. Every file is written to a temporary name in the same
folder and moved into place with :func:`os.replace`, so a run killed at any moment leaves only whole
shards (plus stray ``.tmp-*`` files, removed when the stage is opened again).

Reliability (README, "Reliability guarantees"):

* :func:`atomic_write` and :func:`atomic_folder` are the only ways files are written; a write that fails
  (disk full, read-only folder) removes its temporary and raises :class:`~unigen.errors.WriteError`.
* :meth:`Stage.finish` records the sha256 of every output file (``manifest["sha256"]``; cards, which are
  re-rendered later, excepted). Reopening a finished folder verifies them: a missing, truncated or edited
  file, or a shard the manifest does not list, is reported in one ``unigen: warning:`` line and the stage is
  recomputed (:meth:`Stage.open`); a downstream reader (:meth:`Stage.load`) refuses such a folder.
* :func:`workdir_lock` keeps a second process out of a work folder (``<workdir>/.unigen.lock``, an
  ``flock`` that dies with its holder, holding the owner's pid for the message).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import shutil
import socket
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from unigen import __version__
from unigen.config import fingerprint
from unigen.errors import DataError, StageError, WorkdirBusy, WriteError

MANIFEST = "manifest.json"
SHARD_DIR = "shards"
LOCK_NAME = ".unigen.lock"
TMP_PREFIX = ".tmp-"
#: files a stage re-renders after it is finished (cards, the evaluation beside a model): not hashed
UNHASHED_NAMES = frozenset({MANIFEST, "evaluation.json"})
UNHASHED_SUFFIXES = (".md",)
#: the longest JSONL line read (bounded memory on hostile files); longer lines are a DataError
MAX_LINE_BYTES = 64 << 20


# ---------------------------------------------------------------- the stage table

@dataclass(frozen=True)
class StageInfo:
    """One pipeline stage: its manifest name, its folder under the workdir and its version.

    The version enters the fingerprint: raise it when a stage's output changes for unchanged settings.
    """

    name: str
    folder: str
    version: int = 1


STAGES: dict[str, StageInfo] = {s.name: s for s in (
    StageInfo("generate", "01_generate"),
    StageInfo("relabel", "02_relabel"),
    StageInfo("weight", "03_weight"),
    StageInfo("train", "04_train"),
    StageInfo("evaluate", "05_evaluate"),
)}


def stage_fingerprint(
    stage: str, version: int, *settings: Any, upstream: Mapping[str, str] | None = None
) -> str:
    """Fingerprint of a stage run: stage name, version, settings and upstream fingerprints."""
    return fingerprint({"stage": stage, "version": version}, *settings, dict(upstream or {}))


def fingerprint_of(name: str, settings: Mapping[str, Any], upstream: Mapping[str, str] | None = None) -> str:
    """The fingerprint of stage ``name`` (a key of :data:`STAGES`) for these settings and upstream stages."""
    return stage_fingerprint(name, STAGES[name].version, dict(settings), upstream=upstream)


def stage_dir(workdir: str | Path, stage: str, fp: str) -> Path:
    """``<workdir>/<stage folder>/<fingerprint>``; ``stage`` is a folder (``01_generate``) or a stage name."""
    folder = STAGES[stage].folder if stage in STAGES else stage
    return Path(workdir) / folder / fp


def open_stage(name: str, settings: Mapping[str, Any], *, workdir: str | Path | None = None,
               path: str | Path | None = None, upstream: Mapping[str, str] | None = None,
               seed: int | None = None) -> Stage:
    """Open (create, resume or reuse) the folder of stage ``name`` for these settings.

    The folder is ``path`` if given, else ``<workdir>/<NN_name>/<fingerprint>``. The manifest records
    ``settings`` as the stage's config, the upstream fingerprints and the seed. The caller returns at once
    when ``stage.complete`` (a finished stage is never recomputed).
    """
    fp = fingerprint_of(name, settings, upstream)
    if path is None:
        if workdir is None:
            raise ValueError("open_stage needs a workdir or a path")
        path = stage_dir(workdir, name, fp)
    return Stage.open(path, stage=name, fingerprint=fp, config=dict(settings), upstream=upstream, seed=seed)


def software_versions() -> dict[str, str]:
    """Python, torch, transformers and unigen versions (for manifests)."""
    out = {"python": platform.python_version(), "unigen": __version__}
    for name in ("torch", "transformers", "numpy"):
        try:
            out[name] = __import__(name).__version__
        except ImportError:  # pragma: no cover
            pass
    return out


# ---------------------------------------------------------------- atomic files

def warn(message: str) -> None:
    """One ``unigen: warning: ...`` line on stderr (a problem the run recovers from by itself)."""
    print(f"unigen: warning: {' '.join(message.split())}", file=sys.stderr, flush=True)


def _write_failed(path: Path, exc: OSError) -> WriteError:
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
        raise _write_failed(path, exc) from exc
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
        raise _write_failed(path, exc) from exc
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


def sha256_file(path: str | Path) -> str:
    """sha256 (64 hex digits) of a file's bytes; remembered per (path, inode, size, mtime) in this process,
    so verifying the same unchanged file twice reads it once."""
    path = Path(path)
    st = path.stat()
    key = (str(path.resolve()), st.st_ino, st.st_size, st.st_mtime_ns)
    if key not in _SHA256_MEMO:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        _SHA256_MEMO[key] = h.hexdigest()
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
        raise DataError(f"{where}: text holds an unpaired surrogate ({text[exc.start]!r} at character "
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


# ---------------------------------------------------------------- stage folders

class Stage:
    """One stage folder: its manifest and its shards (see the module docstring)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.shard_dir = self.path / SHARD_DIR
        self._started = time.time()

    # ------------------------------------------------------------ opening
    @classmethod
    def open(cls, path: str | Path, *, stage: str, fingerprint: str, config: Mapping[str, Any],
             upstream: Mapping[str, str] | None = None, seed: int | None = None) -> Stage:
        """Create the folder, or reopen it to resume; refuses a folder of another stage/fingerprint.

        A finished folder whose files do not match the sha256s of its manifest is reported in one warning
        line and emptied, so the caller recomputes the stage.
        """
        self = cls(path)
        self.shard_dir.mkdir(parents=True, exist_ok=True)
        if (self.path / MANIFEST).is_file():
            old = self.manifest
            if old.get("stage") != stage or old.get("fingerprint") != fingerprint:
                raise StageError(f"{self.path} holds stage {old.get('stage')!r} with fingerprint "
                                 f"{old.get('fingerprint')!r}, not {stage!r} {fingerprint!r}: settings "
                                 "changed; use another output folder")
            problems = self.problems() if old.get("status") == "complete" else []
            if problems:
                warn(f"{self.path}: {problems[0]}" + (f" (and {len(problems) - 1} more)" if len(problems) > 1
                                                      else "") + f"; recomputing the {stage} stage")
                self.reset(problems[0])
                return self
            self.remove_temporary()
            if old.get("status") != "complete":
                self.update(status="running", resumes=int(old.get("resumes", 0)) + 1)
            return self
        self._write({"stage": stage, "fingerprint": fingerprint, "status": "running",
                     "config": dict(config), "upstream": dict(upstream or {}), "seed": seed,
                     "counts": {}, "timings": {"seconds": 0.0}, "versions": software_versions(),
                     "created": time.strftime("%Y-%m-%dT%H:%M:%S"), "resumes": 0})
        return self

    @classmethod
    def load(cls, path: str | Path, stage: str | None = None, require_complete: bool = True) -> Stage:
        """An existing stage folder (for reading), checked for stage name, completeness and (when complete)
        the sha256s of its files."""
        self = cls(path)
        if not (self.path / MANIFEST).is_file():
            raise StageError(f"{self.path} is not a stage folder (no {MANIFEST})")
        m = self.manifest
        if stage is not None and m.get("stage") != stage:
            raise StageError(f"{self.path} holds stage {m.get('stage')!r}, expected {stage!r}")
        if require_complete and m.get("status") != "complete":
            raise StageError(f"{self.path} is not complete (status {m.get('status')!r}): run its stage again "
                             "to finish it")
        if m.get("status") == "complete":
            problems = self.problems()
            if problems:
                raise StageError(f"{self.path}: {problems[0]}; run its {m.get('stage')} stage again to "
                                 "recompute it")
        return self

    def problems(self) -> list[str]:
        """Files of this finished folder that do not match its manifest (empty for folders finished before
        manifests recorded sha256s)."""
        recorded = self.manifest.get("sha256")
        if recorded is None:
            return []
        return verify_files(self.path, recorded, extra_in=[SHARD_DIR])

    def reset(self, reason: str) -> None:
        """Remove every output of this folder and mark it running again (the stage starts over)."""
        old = self.manifest
        for p in self.path.iterdir():
            if p.name == MANIFEST:
                continue
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p)
            else:
                p.unlink()
        self.shard_dir.mkdir(parents=True, exist_ok=True)
        keep = ("stage", "fingerprint", "config", "upstream", "seed", "versions", "created")
        self._write({**{k: old[k] for k in keep if k in old}, "status": "running", "counts": {},
                     "timings": {"seconds": 0.0}, "resumes": int(old.get("resumes", 0)) + 1,
                     "recomputed": {"reason": reason, "at": time.strftime("%Y-%m-%dT%H:%M:%S")}})

    # ------------------------------------------------------------ manifest
    @property
    def manifest(self) -> dict[str, Any]:
        path = self.path / MANIFEST
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise StageError(
                f"{path}: not a valid manifest ({exc}); delete the folder to start over"
            ) from None

    @property
    def fingerprint(self) -> str:
        return str(self.manifest["fingerprint"])

    @property
    def complete(self) -> bool:
        return self.manifest.get("status") == "complete"

    def _write(self, data: Mapping[str, Any]) -> None:
        atomic_write_json(self.path / MANIFEST, data)

    def update(self, **fields: Any) -> dict[str, Any]:
        """Set top-level manifest fields (atomically) and return the new manifest."""
        m = self.manifest
        m.update(fields)
        self._write(m)
        return m

    def finish(self, counts: Mapping[str, Any], **extra: Any) -> dict[str, Any]:
        """Mark the stage complete with its counts and the sha256 of every output file (:func:`hashed_files`);
        the wall time of this session is added up."""
        m = self.manifest
        seconds = float(m.get("timings", {}).get("seconds", 0.0)) + time.time() - self._started
        timings = {**m.get("timings", {}), "seconds": round(seconds, 3)}
        self.remove_temporary()
        return self.update(status="complete", counts=dict(counts), timings=timings,
                           finished=time.strftime("%Y-%m-%dT%H:%M:%S"), sha256=hashed_files(self.path),
                           **extra)

    # ------------------------------------------------------------ shards
    def shard_path(self, index: int) -> Path:
        return self.shard_dir / f"shard-{index:05d}.jsonl"

    def stats_path(self, index: int) -> Path:
        return self.shard_dir / f"shard-{index:05d}.stats.json"

    def write_shard(self, index: int, rows: Iterable[Mapping[str, Any]],
                    stats: Mapping[str, Any] | None = None) -> int:
        """Write one shard atomically (its stats first, so a present shard always has them)."""
        if stats is not None:
            atomic_write_json(self.stats_path(index), dict(stats))
        return write_jsonl_atomic(self.shard_path(index), rows)

    def shard_indices(self) -> list[int]:
        """Indices of the finished shards, ascending."""
        out = []
        for p in self.shard_dir.glob("shard-*.jsonl"):
            stem = p.name[len("shard-"): -len(".jsonl")]
            if stem.isdigit():
                out.append(int(stem))
        return sorted(out)

    def has_shard(self, index: int) -> bool:
        return self.shard_path(index).is_file()

    def read_shard(self, index: int) -> list[dict[str, Any]]:
        return list(read_jsonl(self.shard_path(index)))

    def read_stats(self, index: int) -> dict[str, Any]:
        path = self.stats_path(index)
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}

    def iter_rows(self, indices: Iterable[int] | None = None) -> Iterator[dict[str, Any]]:
        """Stream the rows of the given (default: all finished) shards in shard order."""
        for i in self.shard_indices() if indices is None else indices:
            yield from read_jsonl(self.shard_path(i))

    def remove_temporary(self) -> int:
        """Delete leftovers of interrupted atomic writes (files and folders); returns how many."""
        stale = [p for p in self.path.rglob(f"{TMP_PREFIX}*")
                 if not any(q.name.startswith(TMP_PREFIX) for q in p.relative_to(self.path).parents
                            if q.name)]
        for p in stale:
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p, ignore_errors=True)
            else:
                p.unlink(missing_ok=True)
        return len(stale)


def iter_stage_rows(path: str | Path, stage: str | None = None) -> Iterator[dict[str, Any]]:
    """Stream every row of a finished stage folder, shard by shard."""
    yield from Stage.load(path, stage).iter_rows()


def stage_status(workdir: str | Path) -> list[dict[str, Any]]:
    """Every stage folder under ``workdir`` with its status, counts and time, in stage order."""
    out = []
    folders = {s.folder for s in STAGES.values()}
    for manifest in sorted(Path(workdir).glob(f"*/*/{MANIFEST}")):
        if manifest.parent.parent.name not in folders:
            continue
        m = json.loads(manifest.read_text(encoding="utf-8"))
        out.append({"stage": manifest.parent.parent.name, "fingerprint": m.get("fingerprint"),
                    "status": m.get("status"), "counts": m.get("counts", {}),
                    "seconds": m.get("timings", {}).get("seconds"), "path": str(manifest.parent)})
    return out


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
        raise _write_failed(path, exc) from exc
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
