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
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from unigen import __version__
from unigen.config import fingerprint
from unigen.errors import DataError, StageError

MANIFEST = "manifest.json"
SHARD_DIR = "shards"


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

def atomic_write(path: str | Path, write: Callable[[BinaryIO], Any]) -> None:
    """The one atomic writer: ``write(f)`` fills a temporary file in the same folder, which is flushed,
    fsynced and moved onto ``path`` with :func:`os.replace`; on any error the temporary file is removed.

    A reader therefore sees the old file or the new one, never a half-written one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".tmp-{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


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


def file_digest(path: str | Path) -> str:
    """sha256 (12 hex digits) of a file's bytes: the upstream identity of a data file given by hand."""
    h = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    except OSError as exc:
        raise DataError(f"{path}: cannot be read ({exc.strerror})") from None
    return h.hexdigest()[:12]


def read_jsonl(path: str | Path) -> Iterator[dict[str, Any]]:
    """Stream the rows of one JSONL file (errors as :func:`iter_jsonl`)."""
    for _, row in iter_jsonl(path):
        yield row


def iter_jsonl(path: str | Path) -> Iterator[tuple[str, Any]]:
    """``("path:line", value)`` for every non-empty line of a JSONL file.

    A missing or unreadable file, invalid UTF-8 and invalid JSON raise :class:`DataError` naming the
    file and line.
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
        for lineno, raw in enumerate(f, 1):
            where = f"{path}:{lineno}"
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
        """Create the folder, or reopen it to resume; refuses a folder of another stage/fingerprint."""
        self = cls(path)
        self.shard_dir.mkdir(parents=True, exist_ok=True)
        if (self.path / MANIFEST).is_file():
            old = self.manifest
            if old.get("stage") != stage or old.get("fingerprint") != fingerprint:
                raise StageError(f"{self.path} holds stage {old.get('stage')!r} with fingerprint "
                                 f"{old.get('fingerprint')!r}, not {stage!r} {fingerprint!r}: settings "
                                 "changed; use another output folder")
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
        """An existing stage folder (for reading), checked for stage name and completeness."""
        self = cls(path)
        if not (self.path / MANIFEST).is_file():
            raise StageError(f"{self.path} is not a stage folder (no {MANIFEST})")
        m = self.manifest
        if stage is not None and m.get("stage") != stage:
            raise StageError(f"{self.path} holds stage {m.get('stage')!r}, expected {stage!r}")
        if require_complete and m.get("status") != "complete":
            raise StageError(f"{self.path} is not complete (status {m.get('status')!r}): run its stage again "
                             "to finish it")
        return self

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
        """Mark the stage complete with its counts; the wall time of this session is added up."""
        m = self.manifest
        seconds = float(m.get("timings", {}).get("seconds", 0.0)) + time.time() - self._started
        timings = {**m.get("timings", {}), "seconds": round(seconds, 3)}
        return self.update(status="complete", counts=dict(counts), timings=timings,
                           finished=time.strftime("%Y-%m-%dT%H:%M:%S"), **extra)

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
        """Delete leftovers of interrupted atomic writes; returns how many were removed."""
        stale = list(self.path.glob(".tmp-*")) + list(self.shard_dir.glob(".tmp-*"))
        for p in stale:
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
