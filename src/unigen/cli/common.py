"""What every command shares: ``--config``/``--set``, ``--quiet``, where a stage writes, the stage report."""

from __future__ import annotations

import argparse
import contextlib
from pathlib import Path

from unigen.config import UniGenConfig, load_config
from unigen.lock import workdir_lock
from unigen.stages import STAGES, Stage

DEFAULT_WORKDIR = "runs/default"


def add_config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="YAML config (default: the embedded defaults, configs/default.yaml)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="dotted override, e.g. --set relabel.temperature=0.1 (repeatable)")


def add_executor(p: argparse.ArgumentParser) -> None:
    """``--executor local|ray``: shortcut for ``--set run.executor=...`` (where the synth shards run)."""
    p.add_argument("--executor", choices=("local", "ray"), default=None,
                   help="where the generate and relabel shards run: this process, or Ray Data actors on "
                        "RAY_ADDRESS (else a local Ray instance); shortcut for --set run.executor=...")


def add_quiet(p: argparse.ArgumentParser) -> None:
    """``--quiet`` (no progress bars, the libraries' included); ``--no-progress`` is a hidden alias."""
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--no-progress", dest="quiet", action="store_true", help=argparse.SUPPRESS)


def add_wait(p: argparse.ArgumentParser) -> None:
    """``--wait``: queue behind another process using the work folder instead of stopping."""
    p.add_argument("--wait", action="store_true",
                   help="if another unigen process uses the work folder, wait for it instead of stopping "
                        "with an error")


def add_destination(p: argparse.ArgumentParser, stage: str) -> None:
    """``--workdir DIR`` (the pipeline's layout) or ``--output DIR`` (exactly this folder) for ``stage``."""
    what = STAGES[stage].folder
    where = p.add_mutually_exclusive_group()
    where.add_argument(
        "--workdir",
        default=None,
        help=f"pipeline folder: the stage writes <workdir>/{what}/<fingerprint>/, as `unigen run` "
        f"does (default: the workdir of the input stage folder, else {DEFAULT_WORKDIR})",
    )
    where.add_argument("--output", default=None, help="write the stage folder into exactly this folder")
    add_wait(p)


def stage_lock(args: argparse.Namespace, input_stage: str | Path | None = None
               ) -> contextlib.AbstractContextManager:
    """The work-folder lock (:func:`unigen.lock.workdir_lock`) that `unigen run` holds, for a stage command
    writing into its work folder (:func:`workdir_of`), so two processes never fill one stage folder; none
    with ``--output`` (an exact folder the user named)."""
    if args.output:
        return contextlib.nullcontext()
    return workdir_lock(workdir_of(args, input_stage), wait=args.wait)


def config(args: argparse.Namespace, overrides: list[str] | None = None) -> UniGenConfig:
    """The config of ``--config`` and ``--set`` (after ``overrides``), with ``--executor`` last."""
    extra = [f"run.executor={args.executor}"] if getattr(args, "executor", None) else []
    return load_config(args.config, [*(overrides or []), *args.overrides, *extra])


def progress(args: argparse.Namespace) -> bool:
    return not getattr(args, "quiet", False)


def workdir_of(args: argparse.Namespace, input_stage: str | Path | None = None) -> str:
    """``--workdir``, else the workdir holding the input stage folder (``W/NN_stage/<fp>``), else the
    default."""
    if args.workdir:
        return args.workdir
    if input_stage is not None and (Path(input_stage) / "manifest.json").is_file():
        return str(Path(input_stage).resolve().parent.parent)
    return DEFAULT_WORKDIR


def report(path: Path) -> None:
    """Print a finished stage folder, its counts and its data card."""
    m = Stage.load(path).manifest
    counts = ", ".join(f"{k}={v}" for k, v in m.get("counts", {}).items() if not isinstance(v, (dict, list)))
    print(f"{m['stage']} complete: {path}\n  {counts}")
    card = path / "datacard.md"
    if card.is_file():
        print(f"  data card: {card}")
