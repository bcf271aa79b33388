"""``unigen generate`` and ``unigen relabel``: stages 1-2 (:mod:`unigen.synth`)::

    unigen generate [--workdir DIR | --output DIR] [--config FILE] [--set generate.samples_per_label=300 ...]
                    [--executor local|ray]
    unigen relabel [--input GEN_DIR] [--workdir DIR | --output DIR] [--config FILE] [--set ...]
                   [--executor local|ray]

With ``relabel.until_kept`` either command runs UniGen's combined loop, which fills both folders.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from unigen.cli.common import (
    add_config_args,
    add_destination,
    add_executor,
    config,
    progress,
    report,
    stage_lock,
    workdir_of,
)
from unigen.errors import ConfigError


def add_generate(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("generate", help="stage 1: synthetic texts from prompts (sharded, resumable)")
    add_destination(p, "generate")
    add_config_args(p)
    add_executor(p)
    p.set_defaults(func=run_generate)
    return p


def add_relabel(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("relabel", help="stage 2: pseudo-relabel generated texts with the generator")
    p.add_argument("--input", default=None,
                   help="finished generation folder (default: the one of this config under --workdir)")
    add_destination(p, "relabel")
    add_config_args(p)
    add_executor(p)
    p.set_defaults(func=run_relabel)
    return p


def run_generate(args: argparse.Namespace) -> int:
    """Run or resume the generation stage and print its folder."""
    from unigen.synth.generate_stage import generate_into, generate_stage  # torch
    from unigen.synth.stage import synthesize

    cfg = config(args)
    with stage_lock(args):
        if args.output:
            if cfg.relabel.until_kept:
                raise ConfigError("relabel.until_kept fills two stage folders: use --workdir, not --output")
            path = generate_into(cfg, Path(args.output), progress(args))
        elif cfg.relabel.until_kept:
            path = synthesize(cfg, workdir_of(args), progress(args))[0]
        else:
            path = generate_stage(cfg, workdir_of(args), progress(args))
    report(path)
    return 0


def run_relabel(args: argparse.Namespace) -> int:
    """Relabel a finished generation folder and print the relabel folder."""
    from unigen.synth.relabel_stage import relabel_into, relabel_stage  # torch
    from unigen.synth.stage import synthesize

    cfg = config(args)
    with stage_lock(args, args.input):
        if args.output:
            if args.input is None:
                raise ConfigError("--output needs --input GEN_DIR")
            path = relabel_into(cfg, args.input, Path(args.output), progress(args))
        elif cfg.relabel.until_kept:
            path = synthesize(cfg, workdir_of(args, args.input), progress(args))[1]
        else:
            path = relabel_stage(cfg, workdir_of(args, args.input), args.input, progress(args))
    report(path)
    return 0
