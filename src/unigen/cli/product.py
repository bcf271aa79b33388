"""``unigen export`` and ``unigen export-data``: the trained task model and its data as products.

``unigen export MODEL --format onnx --output DIR [--quantize int8]`` writes an ONNX graph (token ids and
attention mask in, class probabilities out), its tokenizer and ``unigen_onnx.json`` into ``DIR``; load it
with :class:`unigen.export.onnx_model.OnnxTaskModel` (needs only onnxruntime, numpy and tokenizers).

``unigen export-data RUN_DIR|STAGE_DIR --output DIR`` writes the final training rows as
``DIR/train.parquet`` with a dataset card (:mod:`unigen.export.parquet`).
"""

from __future__ import annotations

import argparse
import errno
import importlib.util
import json
import socket

from unigen.cli.train import PRECISION_HELP, positive_int
from unigen.errors import UniGenError
from unigen.inference import PRECISIONS


def _need(*modules: str, extra: str) -> None:
    """A one-line error naming the extra to install when an optional library is missing."""
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        raise UniGenError(f"this command needs {', '.join(missing)}: pip install 'unigen-sentiment[{extra}]'")


def add_export(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "export",
        help="export a task model to ONNX (token ids -> probabilities) with its tokenizer",
        description="Writes DIR/model.onnx (inputs input_ids and attention_mask, int64 (batch, sequence); "
        "output probabilities, float32 (batch, labels)), the tokenizer (tokenizer.json or vocab.json), "
        "unigen_onnx.json and the model card. Load it with unigen.OnnxTaskModel or serve it with "
        "`unigen serve DIR`. The export is checked on a few sentences against PyTorch.",
    )
    p.add_argument("model", metavar="MODEL", help="a task-model folder or a train stage folder")
    p.add_argument("--format", choices=("onnx",), default="onnx", help="export format (onnx)")
    p.add_argument("--output", required=True, metavar="DIR", help="the export folder")
    p.add_argument("--quantize", choices=("int8",), default=None,
                   help="int8 dynamic quantization of the weights (smaller, faster on CPU)")
    p.set_defaults(func=run_export)
    return p


def run_export(args: argparse.Namespace) -> int:
    _need("onnx", "onnxruntime", extra="onnx")
    from unigen.export.onnx_export import CHECK_TEXTS, ONNX_NAME, export_onnx  # torch
    from unigen.export.onnx_model import ONNX_CONFIG

    out = export_onnx(args.model, args.output, quantize=args.quantize)
    record = json.loads((out / ONNX_CONFIG).read_text(encoding="utf-8"))
    size = (out / ONNX_NAME).stat().st_size / 2**20
    check = record.get("check", {})
    print(f"exported {record['architecture']} task model ({record['quantization'] or 'float32'}, "
          f"{size:.1f} MiB): {out / ONNX_NAME}")
    if check:
        print(f"  check against PyTorch on {len(CHECK_TEXTS)} sentences: max |p_onnx - p_torch| = "
              f"{check['max_abs_diff']:.2e}, same label {check['agreement']:.0%}")
    return 0


def add_export_data(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "export-data",
        help="write the final training rows of a run as Parquet with a dataset card",
        description="Writes DIR/train.parquet (text, label, label_name, probs, and prompt_label, weight, id "
        "when present) and DIR/README.md (the dataset card). SOURCE is a work folder of `unigen run` or a "
        "train, weight or relabel stage folder. Load it with "
        "datasets.load_dataset('parquet', data_files='DIR/train.parquet').",
    )
    p.add_argument("source", metavar="RUN_DIR|STAGE_DIR",
                   help="work folder, or train/weight/relabel stage folder")
    p.add_argument("--output", required=True, metavar="DIR", help="the data set folder")
    p.set_defaults(func=run_export_data)
    return p


def run_export_data(args: argparse.Namespace) -> int:
    from unigen.export.parquet import PARQUET_NAME, export_training_data  # numpy, pyarrow

    out = export_training_data(args.source, args.output)
    import pyarrow.parquet as pq

    meta = pq.read_metadata(out / PARQUET_NAME)
    print(f"wrote {meta.num_rows} training rows: {out / PARQUET_NAME}\n  dataset card: {out / 'README.md'}")
    return 0


def add_serve(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "serve",
        help="serve a task model over HTTP, with a web page at /",
        description="Starts an HTTP server (FastAPI on uvicorn): POST /predict ({\"text\": ...} or "
        "{\"texts\": [...]}), GET /health, GET /model (the model card as JSON), OpenAPI docs at /docs, and "
        "a web page at /. MODEL is a task-model folder, a train stage folder, or a folder written by "
        "`unigen export --format onnx`.",
    )
    p.add_argument("model", metavar="MODEL", help="task-model, train stage or exported ONNX folder")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=_port, default=8000, help="port (default 8000; 0: any free port)")
    p.add_argument("--max-texts", type=positive_int, default=None, help="texts per request (default 64)")
    p.add_argument("--max-chars", type=positive_int, default=None,
                   help="characters per text (default 5000)")
    p.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N | mps (PyTorch models)")
    p.add_argument("--precision", choices=PRECISIONS, default="auto", help=PRECISION_HELP)
    p.set_defaults(func=run_serve)
    return p


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{value} is not a port number (0 to 65535)")
    return value


def listen(host: str, port: int) -> socket.socket:
    """A socket bound to ``host:port`` and listening, or a one-line :class:`UniGenError` (port in use, an
    address this machine does not have, a port it may not use), before anything says it is serving."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise UniGenError(f"--host {host}: not an address of this machine ({exc.strerror})") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does
        sock.bind(address)
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        reason = "the port is in use (another server is listening there)" \
            if exc.errno == errno.EADDRINUSE else exc.strerror or str(exc)
        raise UniGenError(f"cannot listen on {host}:{port}: {reason}") from None
    sock.set_inheritable(True)
    return sock


def run_serve(args: argparse.Namespace) -> int:
    _need("fastapi", "uvicorn", extra="serve")
    import uvicorn

    from unigen.serve.app import DEFAULT_MAX_CHARS, DEFAULT_MAX_TEXTS, create_app, load_model

    for name in ("max_texts", "max_chars"):  # argparse checks them; in-process callers too
        value = getattr(args, name)
        if value is not None and value < 1:
            raise UniGenError(f"--{name.replace('_', '-')} must be at least 1, got {value}")
    loaded = load_model(args.model, device=args.device, precision=args.precision)
    app = create_app(loaded, max_texts=args.max_texts or DEFAULT_MAX_TEXTS,
                     max_chars=args.max_chars or DEFAULT_MAX_CHARS)
    sock = listen(args.host, args.port)
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host=args.host, port=port,
                                           log_level="warning" if args.quiet else "info"))
    print(f"serving {loaded.backend} model {args.model} ({loaded.numerics}) on http://{args.host}:{port}/ "
          f"(API docs: /docs)", flush=True)
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
    return 0
