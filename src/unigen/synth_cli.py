"""Command-line entry points of the synthetic-data stages, to be wired into :mod:`unigen.cli`::

    unigen generate [--workdir DIR | --output DIR] [--config FILE] [--set generate.samples_per_label=300 ...]
    unigen relabel --input GEN_DIR [--workdir DIR | --output DIR] [--config FILE] [--set ...]

``add_*_arguments(parser)`` add the stage's own options (the caller adds ``--config``/``--set``);
``run_*(args, cfg)`` run the stage with the caller's :class:`UniGenConfig` and return an exit code.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from unigen.config import ConfigError, UniGenConfig

DEFAULT_WORKDIR = "runs/default"


def _common(parser: argparse.ArgumentParser) -> None:
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--workdir", default=None,
                       help=f"pipeline folder; the stage writes <workdir>/<NN_stage>/<fingerprint>/ "
                            f"(default {DEFAULT_WORKDIR})")
    where.add_argument("--output", default=None, help="write the stage into exactly this folder")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def add_generate_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``unigen generate``."""
    _common(parser)


def add_relabel_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``unigen relabel``."""
    parser.add_argument("--input", default=None,
                        help="finished generation folder (default: the one of this config under --workdir)")
    _common(parser)


def _fail(exc: Exception) -> int:
    print(f"unigen: error: {exc}", file=sys.stderr)
    return 2


def run_generate(args: argparse.Namespace, cfg: UniGenConfig) -> int:
    """``unigen generate``: run or resume the generation stage and print its folder."""
    from unigen.artifacts import StageError
    from unigen.generate import generate_into, generate_stage
    from unigen.generate_core import GenerationError

    progress = not getattr(args, "no_progress", False)
    try:
        if getattr(args, "output", None):
            if cfg.relabel.until_kept:
                raise ConfigError("relabel.until_kept fills two stage folders: use --workdir, not --output")
            path = generate_into(cfg, Path(args.output), progress)
        else:
            path = generate_stage(cfg, args.workdir or DEFAULT_WORKDIR, progress)
    except (StageError, GenerationError) as exc:
        return _fail(exc)
    _report(path)
    return 0


def run_relabel(args: argparse.Namespace, cfg: UniGenConfig) -> int:
    """``unigen relabel``: relabel a finished generation folder and print the relabel folder."""
    from unigen.artifacts import StageError
    from unigen.relabel import relabel_into, relabel_stage

    progress = not getattr(args, "no_progress", False)
    gen_dir = getattr(args, "input", None)
    try:
        if getattr(args, "output", None):
            if gen_dir is None:
                raise ConfigError("--output needs --input GEN_DIR")
            path = relabel_into(cfg, gen_dir, Path(args.output), progress)
        else:
            workdir = args.workdir or (str(Path(gen_dir).resolve().parent.parent) if gen_dir else DEFAULT_WORKDIR)
            path = relabel_stage(cfg, workdir, gen_dir, progress)
    except StageError as exc:
        return _fail(exc)
    _report(path)
    return 0


def _report(path: Path) -> None:
    from unigen.artifacts import Stage

    m = Stage.load(path).manifest
    counts = ", ".join(f"{k}={v}" for k, v in m.get("counts", {}).items() if not isinstance(v, dict))
    print(f"{m['stage']} complete: {path}\n  {counts}")
    card = path / "datacard.md"
    if card.is_file():
        print(f"  data card: {card}")
