"""The ``unigen`` command line (:mod:`.app`: parser and error handling; :mod:`.commands`, :mod:`.synth`,
:mod:`.train`: the subcommands; :mod:`.common`: their shared options)."""

from unigen.cli.app import build_parser, main

__all__ = ["build_parser", "main"]
