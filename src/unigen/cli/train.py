"""``unigen weight``, ``unigen train`` and ``unigen predict``: stages 3-4 and the product.

``unigen weight --data RELABEL_DIR`` and ``unigen train --data WEIGHT_DIR`` read the previous stage's folder
as ``unigen run`` writes it and write their own stage folder the same way (``--workdir W``:
``W/03_weight/<fingerprint>``, ``W/04_train/<fingerprint>``; ``--output DIR``: exactly ``DIR``). ``--data``
may also be a JSONL file of training rows (``text`` plus ``probs`` or ``label``, optional ``weight`` and
``keep``; :mod:`unigen.tam.training_data`), made elsewhere.

``unigen predict --model DIR [TEXT ...]`` prints one JSON line ``{"text", "label", "probs"}`` per text;
``DIR`` is a train stage folder or its ``model/``. Without TEXT arguments the texts are read from stdin,
one per line (UTF-8; a line that is not is an error naming it). Texts longer than the model's token limit are
truncated, not rejected.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import BinaryIO, TextIO

from unigen.cli.common import (
    add_config_args,
    add_destination,
    config,
    progress,
    report,
    stage_lock,
    workdir_of,
)
from unigen.errors import DataError
from unigen.files import check_unicode
from unigen.registry import pick_device
from unigen.stages import STAGES

_DATA_HELP = (
    "the previous stage's folder ({stage}/<fingerprint>, as `unigen run` writes it), or a JSONL file of "
    "training rows: text + probs (C floats) or label (class id); optional weight, keep"
)


def add_weight(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "weight",
        help="stage 3: SunGen sample weights for relabeled rows (bi-level optimisation)",
        description="Writes a weight stage folder: shards/shard-00000.jsonl (rows + weight, theta, "
        "keep = top-K), history.jsonl and manifest.json; a killed run resumes from its "
        "state.pt.",
    )
    p.add_argument(
        "--data",
        required=True,
        metavar="RELABEL_DIR|FILE.jsonl",
        help=_DATA_HELP.format(stage=STAGES["relabel"].folder),
    )
    add_destination(p, "weight")
    add_config_args(p)
    p.set_defaults(func=run_weight)
    return p


def run_weight(args: argparse.Namespace) -> int:
    from unigen.weighting.stage import weight_file, weight_stage  # torch

    cfg, data = config(args), Path(args.data)
    with stage_lock(args, data if data.is_dir() else None):
        if data.is_dir():
            path = weight_stage(cfg, workdir_of(args, data), data, progress=progress(args), path=args.output)
        else:
            path = weight_file(data, cfg, workdir=None if args.output else workdir_of(args), path=args.output,
                               progress=progress(args))
    report(path)
    return 0


def add_train(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("train", help="stage 4: train a task model on the weighted rows",
                       description="Writes a train stage folder: model/ (the task model) and checkpoints/ "
                                   "(metrics.jsonl; checkpoint.pt while it runs, so a killed run resumes).")
    p.add_argument(
        "--data",
        required=True,
        metavar="WEIGHT_DIR|FILE.jsonl",
        help=_DATA_HELP.format(stage=STAGES["weight"].folder),
    )
    add_destination(p, "train")
    p.add_argument(
        "--keep-checkpoint", action="store_true", help="keep checkpoints/checkpoint.pt after the run"
    )
    add_config_args(p)
    p.set_defaults(func=run_train)
    return p


def run_train(args: argparse.Namespace) -> int:
    """Train ``train.tam`` on ``args.data`` and report the stage folder; errors name the file and line."""
    from unigen.tam.stage import MODEL_DIR, train_file, train_stage  # torch

    cfg, data = config(args), Path(args.data)
    with stage_lock(args, data if data.is_dir() else None):
        if data.is_dir():
            path = train_stage(cfg, workdir_of(args, data), data, progress=progress(args), path=args.output,
                               keep_checkpoint=args.keep_checkpoint)
        else:
            path = train_file(data, cfg, workdir=None if args.output else workdir_of(args), path=args.output,
                              progress=progress(args), keep_checkpoint=args.keep_checkpoint)
    report(path)
    print(f"  model: {path / MODEL_DIR}")
    return 0


def add_predict(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("predict", help="classify texts with a trained task model (JSON lines out)")
    p.add_argument("--model", required=True, metavar="DIR", help="a train stage folder or its model/ folder")
    p.add_argument("--batch-size", type=int, default=64, help="texts per forward pass")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda")
    p.add_argument("texts", nargs="*", metavar="TEXT", help="texts to classify (default: stdin lines)")
    p.set_defaults(func=run_predict)
    return p


def stdin_texts(stream: BinaryIO | TextIO) -> list[str]:
    """The non-empty lines of a byte stream as texts (UTF-8, an optional byte-order mark, LF or CRLF); a line
    that is not UTF-8 is a :class:`~unigen.errors.DataError` naming it. A text stream (no ``buffer``, as
    in tests) is read as it is."""
    texts = []
    for lineno, raw in enumerate(stream, 1):
        if isinstance(raw, str):
            raw = raw.encode("utf-8", "surrogateescape")
        if lineno == 1:
            raw = raw.removeprefix(b"\xef\xbb\xbf")
        try:
            line = raw.decode("utf-8").rstrip("\r\n")
        except UnicodeDecodeError as exc:
            raise DataError(f"<stdin>:{lineno}: not valid UTF-8 (byte {exc.start + 1} of the line)") from None
        if line.strip():
            texts.append(line)
    return texts


def run_predict(args: argparse.Namespace) -> int:
    """Print ``{"text", "label", "probs"}`` JSON lines for ``args.texts`` (or stdin lines); returns 0."""
    from unigen.tam.model import TaskModel  # torch

    texts = [check_unicode(t, f"argument {i}") for i, t in enumerate(args.texts, 1)] if args.texts \
        else stdin_texts(getattr(sys.stdin, "buffer", None) or sys.stdin)
    model = TaskModel.from_pretrained(args.model, device=pick_device(args.device))
    probs = model.predict_proba(texts, batch_size=args.batch_size)
    for text, p in zip(texts, probs):
        print(json.dumps({"text": text, "label": model.labels[int(p.argmax())],
                          "probs": [round(float(x), 6) for x in p]}))
    return 0
