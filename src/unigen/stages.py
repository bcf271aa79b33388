"""The on-disk contract of the pipeline stages: the stage table, stage folders, manifests, atomic files.

The stages, in order (:data:`STAGES`; the folder names and versions are part of every cached run)::

    generate  01_generate   synthetic texts from prompts                  unigen.synth.generate_stage
    relabel   02_relabel    soft labels from the generator, the filter     unigen.synth.relabel_stage
    weight    03_weight     SunGen sample weights, top-K selection         unigen.weighting.stage
    train     04_train      task model (CE + SCL, denoising memory bank)   unigen.tam.stage
    evaluate  05_evaluate   metrics on the real test sets                  unigen.evaluation.stage
    adapt     06_adapt      a task model adapted to unlabeled texts        unigen.adaptation.stage
                            (``unigen adapt``; not part of ``unigen run``)

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

Reliability (docs/reliability.md): files are written only through :mod:`unigen.files` (atomic writes);

* :meth:`Stage.finish` records the sha256 of every output file (``manifest["sha256"]``; cards, which are
  re-rendered later, excepted). Reopening a finished folder verifies them: a missing, truncated or edited
  file, or a shard the manifest does not list, is reported in one ``unigen: warning:`` line and the stage is
  recomputed (:meth:`Stage.open`); a downstream reader (:meth:`Stage.load`) refuses such a folder.
* :func:`unigen.lock.workdir_lock` keeps a second process out of a work folder (``<workdir>/.unigen.lock``, an
  ``flock`` that dies with its holder, holding the owner's pid for the message).
"""

from __future__ import annotations

import json
import platform
import shutil
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from unigen import __version__
from unigen.config import fingerprint
from unigen.console import warn
from unigen.errors import StageError
from unigen.files import (
    MANIFEST,
    TMP_PREFIX,
    atomic_write_json,
    hashed_files,
    read_jsonl,
    verify_files,
    write_jsonl_atomic,
)

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
    StageInfo("adapt", "06_adapt"),
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


# ---------------------------------------------------------------- provenance of the training rows

def _read_manifest(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads((path / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def upstream_manifests(stage_dir: str | Path) -> dict[str, dict[str, Any]]:
    """``{stage name: manifest}`` of ``stage_dir`` and of every stage upstream of it that is found in the
    same work folder (``<workdir>/<NN_stage>/<fingerprint>``)."""
    found: dict[str, dict[str, Any]] = {}
    todo = [Path(stage_dir)]
    while todo:
        path = todo.pop()
        m = _read_manifest(path)
        if m is None or m.get("stage") in found:
            continue
        found[m["stage"]] = m
        workdir = path.resolve().parent.parent
        for name, fp in (m.get("upstream") or {}).items():
            if name in STAGES:
                todo.append(workdir / STAGES[name].folder / str(fp))
    return found


def training_data_record(stage_dir: str | Path) -> dict[str, Any]:
    """How the rows in a weight (or relabel) stage folder were made, from the manifests upstream of it:
    generator, prompt set, counts generated and kept, relabel rule, weighting, seed, stage fingerprints."""
    manifests = upstream_manifests(stage_dir)
    out: dict[str, Any] = {"stages": {k: m.get("fingerprint") for k, m in manifests.items()}}
    if (gen := manifests.get("generate")) is not None:
        cfg, counts = gen.get("config", {}), gen.get("counts", {})
        settings = cfg.get("generate", {})
        out.update(generator=cfg.get("generator"), prompt_set=settings.get("prompt_set"),
                   lengths=list(settings.get("lengths") or []),
                   samples_per_label=settings.get("samples_per_label"), generated=counts.get("rows"),
                   generated_per_label=counts.get("per_label"), attempts=counts.get("attempts"),
                   sampling={k: settings[k] for k in ("top_k", "top_p", "temperature", "max_new_tokens")
                             if k in settings},
                   seed=gen.get("seed"))
    if (rel := manifests.get("relabel")) is not None:
        settings, counts = rel.get("config", {}).get("relabel", {}), rel.get("counts", {})
        choice = rel.get("rule_choice") or {}
        out.update(kept=counts.get("kept"), kept_per_label=counts.get("kept_per_label"),
                   relabel={"rule": rel.get("rule"), "centred": choice.get("centred"),
                            "chosen": choice.get("how"), "mode": settings.get("mode"),
                            "temperature": settings.get("temperature"),
                            "threshold": settings.get("threshold"),
                            "agreement_with_prompt_labels": counts.get("agreement_all")})
    if (weight := manifests.get("weight")) is not None:
        settings, counts = weight.get("config", {}).get("weight", {}), weight.get("counts", {})
        out["weighting"] = {"enabled": settings.get("enabled"), "rows": counts.get("rows"),
                            "selected": counts.get("selected")}
    return out
