"""``unigen run``, ``status``, ``experiment``, ``evaluate``, ``models`` and ``config``."""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import sys
from pathlib import Path

from unigen import registry
from unigen.cli.common import DEFAULT_WORKDIR, add_config_args, add_executor, add_wait, config, progress
from unigen.config import UniGenConfig, dump_yaml
from unigen.errors import CellsFailed, UniGenError
from unigen.experiment import load_experiment, run_experiment
from unigen.files import atomic_write_json, atomic_write_text
from unigen.lock import workdir_lock
from unigen.stages import stage_status

# ---------------------------------------------------------------- run / status


def add_run(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("run", help="the whole pipeline: generate, relabel, weight, train, evaluate",
                       description="Runs every stage into WORKDIR/<NN_stage>/<fingerprint>/; finished stages "
                                   "are skipped, a killed run resumes, a changed setting makes new folders. "
                                   "Ends with the seven-set table of the task models next to the baselines.")
    p.add_argument("--workdir", default=DEFAULT_WORKDIR, help="where the stages and results are written")
    p.add_argument("--method", choices=("unigen", "zerogen", "sungen"), default=None,
                   help="shortcut for --set run.method=...")
    p.add_argument("--domain", default=None, help="shortcut for --set run.domain=... (zerogen, sungen)")
    add_wait(p)
    add_config_args(p)
    add_executor(p)
    p.set_defaults(func=cmd_run)
    return p


def cmd_run(args: argparse.Namespace) -> int:
    from unigen.pipeline import run_pipeline  # torch

    overrides = []
    if args.method:
        overrides.insert(0, f"run.method={args.method}")
    if args.domain:
        overrides.insert(0, f"run.domain={args.domain}")
    cfg = config(args, overrides)
    run_pipeline(cfg, args.workdir, progress=progress(args), log=lambda m: print(m, file=sys.stderr),
                 wait=args.wait)
    print((Path(args.workdir) / "results.md").read_text(encoding="utf-8"))
    run_json = Path(args.workdir) / "run.json"
    record = json.loads(run_json.read_text(encoding="utf-8")) if run_json.is_file() else {}
    model = record.get("model")
    if model:
        print(f"The task model ({record['evaluation']}): {model}\n"
              f"  classify with `unigen predict --model {model} TEXT`, serve with `unigen serve {model}`,\n"
              f"  export with `unigen export {model} --output DIR`")
    return 0


def add_status(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("status", help="list the stages of a pipeline work folder and their state")
    p.add_argument("--workdir", default=DEFAULT_WORKDIR)
    p.set_defaults(func=cmd_status)
    return p


def cmd_status(args: argparse.Namespace) -> int:
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


# ---------------------------------------------------------------- experiment

def add_experiment(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "experiment",
        help="run a matrix of pipeline cells (the paper's tables), resumably",
        description="Runs the cells of an experiment YAML (see unigen.experiment) into one work "
        "folder, appends one record per cell and task model to its output JSON, and "
        "renders the tables beside the paper's numbers into OUTPUT with .md.",
    )
    p.add_argument("experiment", help="experiment YAML, e.g. experiments/paper.yaml")
    p.add_argument("--max-cells", type=int, default=None, help="stop after running this many cells")
    p.add_argument("--report-only", action="store_true", help="only re-render the tables")
    p.add_argument("--baselines", default="results/baselines.json", help="Prompting rows for the main table")
    add_wait(p)
    p.set_defaults(func=cmd_experiment)
    return p


def cmd_experiment(args: argparse.Namespace) -> int:
    from unigen.evaluation.tables import render_report  # numpy

    exp = load_experiment(args.experiment)
    failed = None
    if args.report_only:
        records = json.loads(exp.output.read_text(encoding="utf-8")) if exp.output.is_file() else []
    else:
        try:
            records = run_experiment(exp, progress=progress(args), log=lambda m: print(m, file=sys.stderr),
                                     max_cells=args.max_cells, wait=args.wait)
        except CellsFailed as exc:
            records, failed = exc.records, exc
    baselines = (
        json.loads(Path(args.baselines).read_text(encoding="utf-8")) if Path(args.baselines).is_file() else {}
    )
    report = render_report(records, baselines)
    atomic_write_text(
        exp.output.with_suffix(".md"), f"Command: `unigen experiment {args.experiment}`\n\n" + report
    )
    print(report)
    if failed is not None:
        print(f"unigen: error: {failed}", file=sys.stderr)
        return 1
    return 0


# ---------------------------------------------------------------- evaluate

def add_evaluate(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "evaluate",
        help="stage 5: accuracy and macro-F1 of a model on the real test sets",
        description="MODEL is `vader`, `prompt:<lm name or path>` (Prompting baseline), a train "
        "stage folder or a task-model folder. With --workdir the metrics are cached in "
        "WORKDIR/05_evaluate/<fingerprint>/metrics.json, as `unigen run` does.",
    )
    p.add_argument("--model", required=True, help="vader | prompt:<lm> | train stage or task-model folder")
    p.add_argument(
        "--datasets", default=None, help="all (default) or a comma list: sst2,imdb,... or file paths"
    )
    p.add_argument("--limit", type=int, default=None, help="fixed seeded subsample of N rows per set")
    p.add_argument("--data-dir", default=None, help="folder holding test/ (default ../shared/datasets)")
    p.add_argument(
        "--workdir", default=None, help="cache the metrics as an evaluate stage folder under this folder"
    )
    p.add_argument("--output", default=None, help="write the metrics as JSON to this file")
    p.add_argument("--plot", default=None, metavar="FILE.png",
                   help="draw per-set accuracy bars (with the paper's Prompting row) into this PNG")
    p.add_argument("--no-paper", action="store_true", help="do not print the paper's Prompting row")
    add_wait(p)
    add_config_args(p)
    p.set_defaults(func=cmd_evaluate)
    return p


def _replace(cfg: UniGenConfig, **sections: dict) -> UniGenConfig:
    changes = {k: dataclasses.replace(getattr(cfg, k), **v) for k, v in sections.items()}
    return dataclasses.replace(cfg, **changes)


def cmd_evaluate(args: argparse.Namespace) -> int:
    from unigen.evaluation.evaluate import (  # torch for task models and Prompting
        evaluate_classifier,
        load_classifier,
        load_eval_sets,
        subsample_seed,
    )
    from unigen.evaluation.stage import evaluate_stage, identity_of  # torch for task models and Prompting
    from unigen.evaluation.tables import format_table, public_json  # numpy

    if args.plot and importlib.util.find_spec("matplotlib") is None:
        raise UniGenError("--plot needs matplotlib: pip install 'unigen-sentiment[plot]'")
    cfg = config(args)
    changes = {"datasets": args.datasets, "limit": args.limit, "data_dir": args.data_dir}
    cfg = _replace(cfg, evaluate={k: v for k, v in changes.items() if v is not None})
    limit = cfg.evaluate.limit
    if args.workdir:
        name = (
            "vader" if args.model == "vader" else "prompt" if args.model.startswith("prompt:") else args.model
        )
        with workdir_lock(args.workdir, wait=args.wait):  # one process per work folder, as `unigen run`
            results = evaluate_stage(cfg, args.workdir, name, args.model, identity_of(args.model, cfg), limit,
                                     progress=progress(args))
    else:
        classifier = load_classifier(args.model, cfg, progress=progress(args))
        name = classifier.name
        results = evaluate_classifier(classifier, load_eval_sets(cfg.evaluate.datasets, cfg, limit))
    print(format_table({name: results}, paper_row=not args.no_paper))
    if limit is not None:
        print(f"Subsample: at most {limit} rows per set, seed {subsample_seed(cfg)} (--limit).")
    if args.output:
        atomic_write_json(args.output, public_json(results))
        print(f"wrote {args.output}")
    if args.plot:
        from unigen.evaluation.paper import PAPER_PROMPTING, set_dict
        from unigen.evaluation.plots import plot_accuracy  # matplotlib

        plot_accuracy({name: results}, args.plot, paper=None if args.no_paper else set_dict(PAPER_PROMPTING),
                      title=f"{name}: accuracy per test set")
        print(f"wrote {args.plot}")
    return 0


# ---------------------------------------------------------------- models / config

def add_models(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("models", help="list the embedded models, or verify and prepare them")
    p.add_argument("--verify", nargs="*", metavar="NAME",
                   help="check sha256 and materialise the named models (none named: all)")
    p.set_defaults(func=cmd_models)
    return p


def cmd_models(args: argparse.Namespace) -> int:
    if args.verify is None:
        for m in registry.EMBEDDED.values():
            print(f"{m.name:14s} {m.kind:13s} {m.description}")
        print(f"cache: {registry.cache_dir()}")
        return 0
    report = registry.verify_all(tuple(args.verify) or None)
    for name, status in report.items():
        print(f"{name:14s} {status}")
    return 0 if all(s == "ok" for s in report.values()) else 1


def add_config(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("config", help="print the resolved configuration as commented YAML")
    add_config_args(p)
    p.set_defaults(func=cmd_config)
    return p


def cmd_config(args: argparse.Namespace) -> int:
    print("# Embedded defaults of the UniGen pipeline (written by `unigen config`). Every key is optional.")
    print(dump_yaml(config(args)))
    return 0
