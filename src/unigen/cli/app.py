"""Command line: ``unigen <command> [--config FILE] [--set section.key=value ...] [--quiet]``.

Heavy libraries (torch, transformers) load inside the command functions, so ``unigen --help`` answers at
once. Every error a user can cause is a :class:`unigen.errors.UniGenError`; :func:`main` prints it as one
line, ``unigen: error: ...``, and exits with status 2.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from unigen import __version__
from unigen.cli import commands, product, synth, train
from unigen.cli.common import add_quiet
from unigen.errors import UniGenError

#: the subcommands in the order ``unigen --help`` lists them: the pipeline, then its stages, then tools
COMMANDS = (
    commands.add_run,
    commands.add_status,
    commands.add_experiment,
    synth.add_generate,
    synth.add_relabel,
    train.add_weight,
    train.add_train,
    commands.add_evaluate,
    train.add_predict,
    product.add_export,
    product.add_export_data,
    product.add_serve,
    commands.add_models,
    commands.add_config,
)


class Parser(argparse.ArgumentParser):
    """argparse with its usage errors as one line, ``unigen: error: ...``, exit status 2 (as every other
    error a user can cause), naming the ``--help`` to read."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"unigen: error: {' '.join(message.split())} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="unigen", description="Zero-shot cross-domain sentiment "
                                     "classifiers from a generative LM (UniGen, EMNLP 2024).")
    parser.add_argument("--version", action="version", version=f"unigen {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in COMMANDS:
        add_quiet(add(sub))
    return parser


def _quiet_libraries() -> None:
    """No progress bars from the libraries either (transformers' "Loading weights", the Hub's downloads)."""
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # read when they are first imported
    if "transformers" in sys.modules:  # already imported in this process (an in-process call of main)
        sys.modules["transformers"].utils.logging.disable_progress_bar()


def _os_error(exc: OSError) -> str:
    where = f"{exc.filename}: " if exc.filename else ""
    return f"{where}{exc.strerror or exc}"


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # --help, --version, or a usage error already printed as one line
        return exc.code if isinstance(exc.code, int) else 2
    if args.quiet:
        _quiet_libraries()
    try:
        return int(args.func(args) or 0)
    except UniGenError as exc:
        message = str(exc)
    except OSError as exc:  # a path given on the command line that cannot be read or written
        message = _os_error(exc)
    except UnicodeDecodeError as exc:
        message = f"a file is not valid UTF-8 ({exc.reason})"
    except KeyboardInterrupt:
        print("unigen: interrupted", file=sys.stderr)
        return 130
    print(f"unigen: error: {' '.join(message.split())}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
