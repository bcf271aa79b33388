"""Thin CLI runners for ``unigen train`` and ``unigen predict`` (wired by :mod:`unigen.cli`).

``unigen train --data ROWS.jsonl --output DIR [--workdir W] [--keep-checkpoint]`` trains a task model on
relabeled rows (see :mod:`unigen.train_data` for the row format) with ``cfg.train``, ``cfg.labels``,
``cfg.seed`` and ``cfg.device``, and saves it to ``DIR``. Checkpoints go to ``W`` (default
``DIR/.train``); an interrupted run resumes when started again with the same arguments; after a
successful save the checkpoint file is deleted unless ``--keep-checkpoint`` (``metrics.jsonl`` stays).

``unigen predict --model DIR [TEXT ...]`` prints one JSON line ``{"text", "label", "probs"}`` per text;
without TEXT arguments the texts are read from stdin, one per line.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

__all__ = ["add_predict_arguments", "add_train_arguments", "run_predict", "run_train"]


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--data``, ``--output``, ``--workdir``, ``--keep-checkpoint`` to the ``train`` subparser."""
    parser.add_argument("--data", required=True, metavar="FILE.jsonl",
                        help="relabeled rows: text + probs (C floats) or label (class id); optional weight, keep")
    parser.add_argument("--output", required=True, metavar="DIR", help="folder for the trained task model")
    parser.add_argument("--workdir", default=None, metavar="DIR",
                        help="checkpoint/metrics folder (default OUTPUT/.train); a rerun resumes from it")
    parser.add_argument("--keep-checkpoint", action="store_true",
                        help="keep WORKDIR/checkpoint.pt after a successful run")


def run_train(args: argparse.Namespace, cfg: Any) -> int:
    """Train on ``args.data`` with ``cfg`` (a :class:`~unigen.config.UniGenConfig`) and save to ``args.output``.

    Returns:
        Exit status 0. Data errors raise :class:`unigen.data.DataError` naming the file and line.
    """
    from unigen.train import resolved_epochs, train_task_model
    from unigen.train_data import read_training_rows

    data = read_training_rows(args.data, len(cfg.labels))
    output = Path(args.output)
    workdir = Path(args.workdir) if args.workdir else output / ".train"
    progress = not getattr(args, "quiet", False) and not getattr(args, "no_progress", False)
    result = train_task_model(data, cfg.train, cfg.labels, seed=cfg.seed, workdir=workdir,
                              progress=progress, device=cfg.device)
    training = {"data": str(args.data), "rows": len(data), "seed": cfg.seed, "epochs": resolved_epochs(cfg.train),
                "best_epoch": result.best_epoch, "best_valid_acc": result.best_valid_acc,
                "history": result.history}
    result.model.save_pretrained(output, training=training)
    if not args.keep_checkpoint:
        (workdir / "checkpoint.pt").unlink(missing_ok=True)
    print(f"saved {cfg.train.tam} task model to {output} (best epoch {result.best_epoch}, "
          f"synthetic-validation accuracy {result.best_valid_acc:.4f})", file=sys.stderr)
    return 0


def add_predict_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--model``, ``--batch-size`` and the positional ``TEXT`` arguments to the ``predict`` subparser."""
    parser.add_argument("--model", required=True, metavar="DIR", help="a folder written by `unigen train`")
    parser.add_argument("--batch-size", type=int, default=64, help="texts per forward pass")
    parser.add_argument("texts", nargs="*", metavar="TEXT", help="texts to classify (default: stdin lines)")


def run_predict(args: argparse.Namespace) -> int:
    """Print ``{"text", "label", "probs"}`` JSON lines for ``args.texts`` (or stdin lines); returns 0."""
    from unigen.lm import pick_device
    from unigen.tam import TaskModel

    texts = list(args.texts) if args.texts else [line.rstrip("\n") for line in sys.stdin if line.strip()]
    model = TaskModel.from_pretrained(args.model, device=pick_device(getattr(args, "device", None) or "auto"))
    probs = model.predict_proba(texts, batch_size=args.batch_size)
    for text, p in zip(texts, probs):
        print(json.dumps({"text": text, "label": model.labels[int(p.argmax())],
                          "probs": [round(float(x), 6) for x in p]}))
    return 0
