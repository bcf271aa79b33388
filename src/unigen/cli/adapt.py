"""``unigen adapt --model MODEL --texts FILE``: a task model adapted to the user's unlabeled texts.

Reads the texts with the reader of ``unigen predict --input`` (:mod:`unigen.textfiles`: JSON lines or CSV
with a text column, Parquet, plain text one per line); only the text column is read, so labels in the file
never are. Writes an adapt stage folder (``--workdir W``: ``W/06_adapt/<fingerprint>``, default the work
folder holding MODEL, else runs/default; ``--output DIR``: exactly ``DIR``) whose ``model/`` is a task
model like any other (``unigen predict``/``serve``/``export``). The method: docs/adapt.md.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from unigen.cli.common import add_config_args, add_wait, config, progress
from unigen.lock import workdir_lock


def add_adapt(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "adapt", help="adapt a task model to your own unlabeled texts (no labels needed)",
        description="Adapts MODEL to the texts of FILE (JSON lines or CSV with a text column, Parquet, or "
        "plain text one per line) without labels: the class prior of your texts is estimated (the "
        "generator's calibrated verbalizer and the task model), the decision threshold is moved to it, and "
        "(adapt.method=self_train) the model is fine-tuned on prior-matched pseudo-labels mixed with its "
        "synthetic training rows; adapt.method=distill trains a new, smaller model (adapt.student) on the "
        "model's probabilities for the texts instead. Labels in FILE are never read. Settings: --set "
        "adapt.KEY=VALUE (docs/adapt.md). Writes an adapt stage folder whose model/ is the adapted task "
        "model.")
    p.add_argument("--model", required=True, metavar="DIR",
                   help="a task-model folder, or a train (or adapt) stage folder")
    p.add_argument("--texts", required=True, metavar="FILE",
                   help="unlabeled texts: .jsonl, .csv, .tsv, .parquet or .txt (one text per line)")
    p.add_argument("--text-field", default=None, metavar="NAME",
                   help="the column or JSON field holding the text (default: text, or the only column)")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--workdir", default=None,
                       help="work folder: the stage writes <workdir>/06_adapt/<fingerprint>/ (default: the "
                            "work folder holding MODEL, else runs/default)")
    where.add_argument("--output", default=None, help="write the stage folder into exactly this folder")
    add_wait(p)
    add_config_args(p)
    p.set_defaults(func=run_adapt)
    return p


def run_adapt(args: argparse.Namespace) -> int:
    from unigen.adaptation.stage import MODEL_DIR, adapt_stage, default_workdir, task_model_folder  # torch
    from unigen.tam.model_card import student_name

    cfg = config(args)
    task_model_folder(args.model)  # a one-line error before anything else
    if not Path(args.texts).is_file():
        from unigen.errors import DataError

        what = "is a folder, not a file" if Path(args.texts).is_dir() else "no such file"
        raise DataError(f"{args.texts}: {what}")
    if args.output:
        path = adapt_stage(cfg, args.model, args.texts, path=args.output, progress=progress(args),
                           text_field=args.text_field)
    else:
        workdir = args.workdir or default_workdir(args.model)
        with workdir_lock(workdir, wait=args.wait):
            path = adapt_stage(cfg, args.model, args.texts, workdir=workdir, progress=progress(args),
                               text_field=args.text_field)
    record = json.loads((path / MODEL_DIR / "unigen_tam.json").read_text(encoding="utf-8"))
    a = record["training"]["adaptation"]
    data = a["data"]
    unread = f" ({', '.join(data['unread_columns'])} not read)" if data["unread_columns"] else ""
    share = "; ".join(f"{k}: {100 * v:.1f}% -> {100 * a['predicted_share_after'][k]:.1f}%"
                      for k, v in a["predicted_share_before"].items())
    print(f"adapt complete: {path}\n"
          f"  texts: {data['rows']:,} from {data['file']} (column {data['text_field']!r}{unread}); labels in "
          "the file are never read\n"
          f"  method: {a['method']}, prior {a.get('prior_estimator') or a['settings']['prior']}"
          + (f" = {', '.join(f'{k} {100 * v:.1f}%' for k, v in a['prior'].items())}" if a["prior"] else "")
          + (f"\n  student: {student_name(a['student'], markdown=False)}, trained on "
             f"{a['student']['distilled_texts']:,} of the texts with the model's probabilities + "
             f"{a['student']['synthetic_rows']:,} synthetic rows"
             if a.get("student") else "")
          + f"\n  predicted share on the texts: {share}\n"
          f"  model: {path / MODEL_DIR}")
    return 0
