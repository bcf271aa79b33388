"""Command line: ``unigen <command> [--config FILE] [--set section.key=value ...]``.

Heavy libraries load inside the command functions, so ``unigen --help`` answers at once.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from unigen.config import ConfigError, UniGenConfig, load_config


def _add_config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="YAML config (default: the embedded defaults, configs/default.yaml)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="dotted override, e.g. --set relabel.temperature=0.1 (repeatable)")


def _config(args: argparse.Namespace) -> UniGenConfig:
    return load_config(args.config, args.overrides)


# ---------------------------------------------------------------- evaluate

def _add_evaluate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="accuracy and macro-F1 of a model on the real test sets",
                       description="MODEL is `vader`, `prompt:<lm name or path>` (Prompting baseline) "
                                   "or a trained task-model folder.")
    p.add_argument("--model", required=True, help="vader | prompt:<lm> | task-model folder")
    p.add_argument("--datasets", default=None, help="all (default) or a comma list: sst2,imdb,... or file paths")
    p.add_argument("--limit", type=int, default=None, help="fixed seeded subsample of N rows per set")
    p.add_argument("--data-dir", default=None, help="folder holding test/ (default ../shared/datasets)")
    p.add_argument("--output", default=None, help="write the metrics as JSON to this file")
    p.add_argument("--no-paper", action="store_true", help="do not print the paper's Prompting row")
    _add_config_args(p)
    p.set_defaults(func=cmd_evaluate)


def cmd_evaluate(args: argparse.Namespace) -> int:
    from unigen.artifacts import atomic_write_json
    from unigen.evaluate import (
        evaluate_classifier,
        format_table,
        load_classifier,
        load_eval_sets,
        public_json,
        subsample_seed,
    )

    cfg = _config(args)
    if args.data_dir:
        cfg = _replace(cfg, evaluate={"data_dir": args.data_dir})
    names = args.datasets or cfg.evaluate.datasets
    limit = args.limit if args.limit is not None else cfg.evaluate.limit
    datasets = load_eval_sets(names, cfg, limit)
    classifier = load_classifier(args.model, cfg)
    results = evaluate_classifier(classifier, datasets)
    print(format_table({classifier.name: results}, paper=None if args.no_paper else _paper_row()))
    if limit is not None:
        print(f"Subsample: at most {limit} rows per set, seed {subsample_seed(cfg)} (--limit).")
    if args.output:
        atomic_write_json(args.output, public_json(results))
        print(f"wrote {args.output}")
    return 0


def _paper_row() -> dict[str, float]:
    from unigen.evaluate import PAPER_PROMPTING

    return PAPER_PROMPTING


def _replace(cfg: UniGenConfig, **sections: dict) -> UniGenConfig:
    import dataclasses

    changes = {k: dataclasses.replace(getattr(cfg, k), **v) for k, v in sections.items()}
    return dataclasses.replace(cfg, **changes)


# ---------------------------------------------------------------- models

def _add_models(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="list the embedded models, or verify and prepare them")
    p.add_argument("--verify", nargs="*", metavar="NAME",
                   help="check sha256 and materialise the named models (none named: all)")
    p.set_defaults(func=cmd_models)


def cmd_models(args: argparse.Namespace) -> int:
    from unigen import registry

    if args.verify is None:
        for m in registry.EMBEDDED.values():
            print(f"{m.name:14s} {m.kind:13s} {m.description}")
        print(f"cache: {registry.cache_dir()}")
        return 0
    report = registry.verify_all(tuple(args.verify) or None)
    for name, status in report.items():
        print(f"{name:14s} {status}")
    return 0 if all(s == "ok" for s in report.values()) else 1


# ---------------------------------------------------------------- train / predict

def _add_train(sub: argparse._SubParsersAction) -> None:
    from unigen.train_cli import add_train_arguments

    p = sub.add_parser("train", help="train a task model on relabeled rows (JSONL)")
    add_train_arguments(p)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_config_args(p)
    p.set_defaults(func=_train)


def _train(args: argparse.Namespace) -> int:
    from unigen.train_cli import run_train

    return run_train(args, _config(args))


def _add_predict(sub: argparse._SubParsersAction) -> None:
    from unigen.train_cli import add_predict_arguments

    p = sub.add_parser("predict", help="classify texts with a trained task model (JSON lines out)")
    add_predict_arguments(p)
    p.add_argument("--device", default="auto", help="auto | cpu | cuda")
    p.set_defaults(func=_predict)


def _predict(args: argparse.Namespace) -> int:
    from unigen.train_cli import run_predict

    return run_predict(args)


# ---------------------------------------------------------------- generate / relabel

def _add_generate(sub: argparse._SubParsersAction) -> None:
    from unigen.synth_cli import add_generate_arguments

    p = sub.add_parser("generate", help="stage 1: synthetic texts from prompts (sharded, resumable)")
    add_generate_arguments(p)
    _add_config_args(p)
    p.set_defaults(func=_generate)


def _generate(args: argparse.Namespace) -> int:
    from unigen.synth_cli import run_generate

    return run_generate(args, _config(args))


def _add_relabel(sub: argparse._SubParsersAction) -> None:
    from unigen.synth_cli import add_relabel_arguments

    p = sub.add_parser("relabel", help="stage 2: pseudo-relabel generated texts with the generator")
    add_relabel_arguments(p)
    _add_config_args(p)
    p.set_defaults(func=_relabel)


def _relabel(args: argparse.Namespace) -> int:
    from unigen.synth_cli import run_relabel

    return run_relabel(args, _config(args))


# ---------------------------------------------------------------- weight

def _add_weight(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("weight", help="SunGen sample weights for relabeled rows (bi-level optimisation)",
                       description="Writes OUTPUT/weighted.jsonl (rows + weight, theta, keep = top-K), "
                                   "history.jsonl and summary.json; a killed run resumes from OUTPUT/state.pt.")
    p.add_argument("--data", required=True, metavar="FILE.jsonl", help="relabeled rows (text + probs or label)")
    p.add_argument("--output", required=True, metavar="DIR", help="output folder")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_config_args(p)
    p.set_defaults(func=cmd_weight)


def cmd_weight(args: argparse.Namespace) -> int:
    from unigen.weight_stage import weight_file

    summary = weight_file(args.data, args.output, _config(args), progress=not args.quiet)
    print(f"weighted {summary['rows']} rows, kept {summary['selected']}; mean weight {summary['weight_mean']:.3f}; "
          f"wrote {args.output}/weighted.jsonl")
    return 0


# ---------------------------------------------------------------- experiment

def _add_experiment(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("experiment", help="run a matrix of pipeline cells (the paper's tables), resumably",
                       description="Runs the cells of an experiment YAML (see unigen.experiment) into one work "
                                   "folder, appends one record per cell and task model to its output JSON, and "
                                   "renders the tables beside the paper's numbers into OUTPUT with .md.")
    p.add_argument("experiment", help="experiment YAML, e.g. experiments/paper.yaml")
    p.add_argument("--max-cells", type=int, default=None, help="stop after running this many cells")
    p.add_argument("--report-only", action="store_true", help="only re-render the tables")
    p.add_argument("--baselines", default="results/baselines.json", help="Prompting rows for the main table")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_experiment)


def cmd_experiment(args: argparse.Namespace) -> int:
    import json

    from unigen.experiment import CellsFailed, load_experiment, run_experiment
    from unigen.report import render_report

    exp = load_experiment(args.experiment)
    failed = None
    if args.report_only:
        records = json.loads(exp.output.read_text()) if exp.output.is_file() else []
    else:
        try:
            records = run_experiment(exp, progress=not args.quiet, log=lambda m: print(m, file=sys.stderr),
                                     max_cells=args.max_cells)
        except CellsFailed as exc:
            records, failed = exc.records, exc
    baselines = json.loads(Path(args.baselines).read_text()) if Path(args.baselines).is_file() else {}
    report = render_report(records, baselines)
    exp.output.with_suffix(".md").write_text(f"Command: `unigen experiment {args.experiment}`\n\n" + report)
    print(report)
    if failed is not None:
        print(f"unigen: error: {failed}", file=sys.stderr)
        return 1
    return 0


# ---------------------------------------------------------------- config

def _add_config(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("config", help="print the resolved configuration as commented YAML")
    _add_config_args(p)
    p.set_defaults(func=cmd_config)


def cmd_config(args: argparse.Namespace) -> int:
    from unigen.config import dump_yaml

    print("# Embedded defaults of the UniGen pipeline (written by `unigen config`). Every key is optional.")
    print(dump_yaml(_config(args)))
    return 0


# ---------------------------------------------------------------- run / status

def _add_run(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="the whole pipeline: generate, relabel, weight, train, evaluate",
                       description="Runs every stage into WORKDIR/<NN_stage>/<fingerprint>/; finished stages "
                                   "are skipped, a killed run resumes, a changed setting makes new folders. "
                                   "Ends with the seven-set table of the task models next to the baselines.")
    p.add_argument("--workdir", default="runs/default", help="where the stages and results are written")
    p.add_argument("--method", choices=("unigen", "zerogen", "sungen"), default=None,
                   help="shortcut for --set run.method=...")
    p.add_argument("--domain", default=None, help="shortcut for --set run.domain=... (zerogen, sungen)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    _add_config_args(p)
    p.set_defaults(func=cmd_run)


def cmd_run(args: argparse.Namespace) -> int:
    from unigen.pipeline import run_pipeline

    overrides = list(args.overrides)
    if args.method:
        overrides.insert(0, f"run.method={args.method}")
    if args.domain:
        overrides.insert(0, f"run.domain={args.domain}")
    cfg = load_config(args.config, overrides)
    run_pipeline(cfg, args.workdir, progress=not args.quiet, log=lambda m: print(m, file=sys.stderr))
    print((Path(args.workdir) / "results.md").read_text())
    return 0


def _add_status(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("status", help="list the stages of a pipeline work folder and their state")
    p.add_argument("--workdir", default="runs/default")
    p.set_defaults(func=cmd_status)


def cmd_status(args: argparse.Namespace) -> int:
    from unigen.pipeline import stage_status

    stages = stage_status(args.workdir)
    if not stages:
        print(f"no stages in {args.workdir}")
        return 1
    print(f"{'stage':12s} {'fingerprint':13s} {'status':9s} {'seconds':>8s}  counts")
    for s in stages:
        seconds = "" if s["seconds"] is None else f"{s['seconds']:.0f}"
        counts = ", ".join(f"{k}={v}" for k, v in s["counts"].items() if not isinstance(v, (dict, list)))
        print(f"{s['stage']:12s} {s['fingerprint']:13s} {s['status']:9s} {seconds:>8s}  {counts}")
    return 0


# ---------------------------------------------------------------- main

def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="unigen", description="Zero-shot cross-domain sentiment "
                                     "classifiers from a generative LM (UniGen, EMNLP 2024).")
    from unigen import __version__

    parser.add_argument("--version", action="version", version=f"unigen {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in (_add_run, _add_status, _add_experiment, _add_generate, _add_relabel, _add_weight, _add_train, _add_predict, _add_evaluate, _add_models,
                _add_config):
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "quiet", False):  # the libraries' own bars too (transformers' "Loading weights")
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    from unigen.artifacts import StageError
    from unigen.data import DataError
    from unigen.generate_core import GenerationError
    from unigen.registry import ModelNotAvailable

    try:
        return int(args.func(args) or 0)
    except (ConfigError, DataError, ModelNotAvailable, StageError, GenerationError) as exc:
        print(f"unigen: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("unigen: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
