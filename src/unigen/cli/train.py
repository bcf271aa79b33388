"""``unigen weight``, ``unigen train`` and ``unigen predict``: stages 3-4 and the product.

``unigen weight --data RELABEL_DIR`` and ``unigen train --data WEIGHT_DIR`` read the previous stage's folder
as ``unigen run`` writes it and write their own stage folder the same way (``--workdir W``:
``W/03_weight/<fingerprint>``, ``W/04_train/<fingerprint>``; ``--output DIR``: exactly ``DIR``). ``--data``
may also be a JSONL file of training rows (``text`` plus ``probs`` or ``label``, optional ``weight`` and
``keep``; :mod:`unigen.tam.training_data`), made elsewhere.

``unigen predict --model DIR [TEXT ...]`` prints one JSON line ``{"text", "label", "probabilities"}`` per
text (:mod:`unigen.predictions`); ``--input FILE`` reads a file of texts (:mod:`unigen.textfiles`: JSON lines,
CSV, Parquet or plain text) and carries its columns through, ``--output FILE`` writes ``.jsonl`` or ``.csv``.
``DIR`` is a train stage folder, its ``model/`` or an ONNX export. Without TEXT arguments or ``--input`` the
texts are read from stdin. Texts longer than the model's token limit are truncated, not rejected; an empty
text gets no label.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any, TextIO

from unigen.cli.common import (
    add_config_args,
    add_destination,
    config,
    progress,
    report,
    stage_lock,
    workdir_of,
)
from unigen.console import warn
from unigen.errors import UniGenError
from unigen.files import check_unicode
from unigen.inference import PRECISIONS, check_device, is_onnx, load_model, model_precision
from unigen.predictions import RowWriter, output_format, predict_rows
from unigen.stages import STAGES
from unigen.textfiles import FORMATS, STDIN, TextFile, TextRow, count_rows, open_texts

#: seconds before ``unigen predict`` shows its progress bar (short inputs show none)
PROGRESS_DELAY = 1.0

#: ``--precision`` of ``unigen predict`` and ``unigen serve``
PRECISION_HELP = ("auto (default): bf16 autocast for a PyTorch transformer on a CPU or GPU with native bf16 "
                  "(MPNet-base: the float32 label on 99.9%% of 2,100 real test texts at 2.9x the speed), "
                  "else fp32 | fp32 | bf16 (transformers only; slower where bf16 is emulated)")

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


def positive_int(text: str) -> int:
    """An argparse type: an integer of at least 1 (checked again in the command, for in-process calls)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def add_predict(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "predict", help="classify texts or a file of texts with a trained task model",
        description="Classifies the TEXT arguments, or the texts of --input FILE (JSON lines or CSV with a "
        "text column, Parquet, or plain text one per line; '-' or nothing: stdin), and writes one row per "
        "text: the input's columns, then label and probabilities (label names). Output: JSON lines on "
        "stdout, or --output FILE (.jsonl or .csv). MODEL is a train stage folder, a task-model folder or "
        "an ONNX export (`unigen export`). An empty text gets no label (null). Long texts are truncated to "
        "the model's token limit, not rejected.")
    p.add_argument("--model", required=True, metavar="DIR",
                   help="a train stage folder, its model/ folder, or an exported ONNX folder")
    p.add_argument("--input", default=None, metavar="FILE",
                   help="file of texts: .jsonl, .csv, .tsv, .parquet or .txt (one text per line); - = stdin")
    p.add_argument("--output", default=None, metavar="FILE",
                   help="write the rows to FILE (.jsonl or .csv, atomically) instead of stdout")
    p.add_argument("--text-field", default=None, metavar="NAME",
                   help="the column or JSON field holding the text (default: text, or the only column)")
    p.add_argument("--input-format", default=None, choices=FORMATS,
                   help="the input's format when its ending does not say it (stdin: JSON lines when the "
                        "first line is a JSON object, else text)")
    p.add_argument("--batch-size", type=positive_int, default=64, help="texts per forward pass (default 64)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N | mps (PyTorch models)")
    p.add_argument("--precision", choices=PRECISIONS, default="auto", help=PRECISION_HELP)
    p.add_argument("texts", nargs="*", metavar="TEXT", help="texts to classify (default: --input or stdin)")
    p.set_defaults(func=run_predict)
    return p


def _check_predict_args(args: argparse.Namespace) -> None:
    """Every argument of ``unigen predict`` checked before the model loads: one line, exit 2."""
    if args.batch_size < 1:
        raise UniGenError(f"--batch-size must be at least 1, got {args.batch_size}")
    if args.texts and args.input is not None:
        raise UniGenError("give TEXT arguments or --input FILE, not both")
    if args.texts and (args.text_field or args.input_format):
        raise UniGenError("--text-field and --input-format apply to --input FILE (or stdin), not to TEXT "
                          "arguments")
    if len(args.texts) == 1 and args.texts[0] != "-" and Path(args.texts[0]).is_file():
        raise UniGenError(f"{args.texts[0]} is a file: to classify the texts in it, use --input "
                          f"{args.texts[0]}")
    for i, text in enumerate(args.texts, 1):
        check_unicode(text, f"argument {i}")
    if args.output not in (None, "-"):
        out = Path(args.output)
        if out.is_dir():
            raise UniGenError(f"--output {out}: is a folder; name a .jsonl or .csv file")
        output_format(args.output)
        if args.input not in (None, "-") and out.resolve() == Path(args.input).resolve():
            raise UniGenError(f"--output {out} is the input file; write the predictions to another file")
        parent = next((p for p in out.absolute().parents if p.exists()), None)
        if parent is not None and (not parent.is_dir() or not os.access(parent, os.W_OK)):
            raise UniGenError(f"--output {out}: {parent} is not a folder this user can write to")
    if is_onnx(args.model):
        if args.device not in ("auto", "cpu"):
            raise UniGenError(f"--device {args.device}: {args.model} is an ONNX export, which runs on the "
                              "CPU; leave out --device")
        args.device = "cpu"
    else:
        args.device = check_device(args.device)
    args.precision = model_precision(args.model, args.precision, args.device)


def _open_input(args: argparse.Namespace) -> TextFile:
    if args.texts:
        rows = (TextRow(f"argument {i}", t, {"text": t}) for i, t in enumerate(args.texts, 1))
        return TextFile("arguments", "txt", "text", ["text"], rows)
    return open_texts(args.input or STDIN, text_field=args.text_field, format=args.input_format)


def _classify_into(stream: TextIO, fmt: str, source: TextFile, loaded: Any, args: argparse.Namespace,
                   bar: Any) -> RowWriter:
    writer = RowWriter(stream, fmt, source.columns, loaded.labels)
    for row, pred in predict_rows(loaded, source, batch_size=args.batch_size):
        writer.write(row.fields, pred)
        bar.update(1)
    return writer


def run_predict(args: argparse.Namespace) -> int:
    """Classify ``args.texts``, ``--input`` or stdin; rows to stdout (JSON lines) or ``--output``."""
    import time

    from tqdm.auto import tqdm

    _check_predict_args(args)
    source = _open_input(args)
    with source:
        loaded = load_model(args.model, device=args.device, precision=args.precision)
        total = count_rows(args.input, args.input_format) if args.input not in (None, "-") else None
        show = progress(args) and args.input is not None
        tic = time.perf_counter()
        with tqdm(total=total, unit=" texts", disable=not show, file=sys.stderr, mininterval=0.5,
                  delay=PROGRESS_DELAY, smoothing=0.1, desc="predict") as bar:
            try:
                if args.output in (None, "-"):
                    writer = _classify_into(sys.stdout, "jsonl", source, loaded, args, bar)
                else:
                    writer = _write_file(Path(args.output), source, loaded, args, bar)
            except BaseException:
                bar.leave = False  # the error is the one line left
                raise
            bar.total = bar.n
        seconds = time.perf_counter() - tic
    _report(args, source, loaded, writer, seconds)
    return 0


def _write_file(path: Path, source: TextFile, loaded: Any, args: argparse.Namespace, bar: Any) -> RowWriter:
    import io

    from unigen.files import atomic_write

    done: list[RowWriter] = []

    def write(f: Any) -> None:
        stream = io.TextIOWrapper(f, encoding="utf-8", newline="")
        done.append(_classify_into(stream, output_format(path), source, loaded, args, bar))
        stream.flush()
        stream.detach()

    atomic_write(path, write)
    return done[0]


def _report(args: argparse.Namespace, source: TextFile, loaded: Any, writer: RowWriter, seconds: float
            ) -> None:
    """One line on stderr: how many texts, which backend ran, how fast, where the rows went."""
    if writer.renamed:
        warn(f"{source.name}: column(s) {', '.join(writer.renamed)} written as "
             f"{', '.join(writer.renamed.values())}: 'label' and the probabilities are the prediction")
    if writer.dropped:
        warn(f"{writer.dropped} row(s) had fields beyond the CSV columns {', '.join(writer.columns)} (taken "
             "from the first row); they were left out")
    if args.quiet:
        return
    where = f"; wrote {args.output}" if args.output not in (None, "-") else ""
    rate = f" ({writer.rows / seconds:,.0f} texts/s)" if seconds > 0 and writer.rows else ""
    empty = f" ({writer.empty:,} empty: no label)" if writer.empty else ""
    print(f"unigen: predicted {writer.rows:,} text(s){empty} with the {loaded.backend} model {args.model} "
          f"({loaded.numerics}) in {seconds:.1f} s{rate}{where}", file=sys.stderr)
