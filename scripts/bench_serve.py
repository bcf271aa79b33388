"""Serving performance, measured: `unigen serve` on loopback, driven by bounded concurrent clients.

For each task model (MPNet-base, the default; MiniLM-L6; the LSTM) and backend (PyTorch float32, PyTorch under
bf16 autocast where the CPU computes bf16 natively (what ``unigen serve`` picks there), ONNX float32, ONNX
int8) a server process (`python -m unigen serve`) is started on 127.0.0.1 and warmed up; then
``--concurrency`` client threads each send ``--requests`` requests of batch size 1 and of 32 real test-set
texts. Recorded: requests/s, texts/s and the p50/p99 latency of a request. The same texts classified by
prompting SmolLM2 (the generator as a zero-shot classifier, in-process with the default scoring backend; by
default with the calibrated verbalizer rule that labels the training data, one forward pass per text:
``--prompt-rule``) are the baseline of the speed-up column.

Speed does not depend on the weights, so the task models are built untrained (seeded heads) at the shapes
`unigen run` trains: the encoders with mean pooling, the LSTM with 256 units over GloVe-6B-50d, both with the
128-token prediction limit. Every request loop is bounded in count and time and talks to 127.0.0.1 only.

Usage::

    .venv/bin/python scripts/bench_serve.py                      # writes results/serving.md
    .venv/bin/python scripts/bench_serve.py --requests 5 --models lstm --output /tmp/serving.md   # quick
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shlex
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

LABELS = ("negative", "positive")
BATCHES = (1, 32)
ROOT = Path(__file__).resolve().parents[1]


def real_texts(per_set: int) -> list[str]:
    from unigen.evaluation.datasets import default_data_dir

    texts = []
    for path in sorted((default_data_dir() / "test").glob("*.jsonl")):
        with open(path, encoding="utf-8") as f:
            texts += [json.loads(line)["text"] for _, line in zip(range(per_set), f)]
    if not texts:
        sys.exit("no test sets found (../shared/datasets/test)")
    rng = np.random.default_rng(0)
    return [texts[i] for i in rng.permutation(len(texts))]


#: backend -> (folder kind, ``unigen serve --precision``); pytorch-bf16 is what ``--precision auto`` serves
#: for a transformer on a CPU with native bf16 (measured only there, and not for the LSTM)
BACKENDS = {"pytorch": ("pytorch", "fp32"), "pytorch-bf16": ("pytorch", "bf16"),
            "onnx-fp32": ("onnx", None), "onnx-int8": ("onnx-int8", None)}


def build_models(kinds: list[str], texts: list[str], folder: Path, backends: list[str]
                 ) -> dict[str, tuple[Path, str | None]]:
    """``{"<kind> <backend>": (folder, precision)}`` for every kind and backend."""
    from unigen.export.onnx_export import export_onnx
    from unigen.registry import native_bf16
    from unigen.tam.model import TaskModel

    out = {}
    for kind in kinds:
        if kind == "lstm":
            model = TaskModel.build("lstm", LABELS, texts=texts, max_length=128, seed=0)
        else:
            model = TaskModel.build(kind, LABELS, max_length=128, pooling="mean", seed=0)
        saved = model.save_pretrained(folder / kind)
        for backend in backends:
            made, precision = BACKENDS[backend]
            if backend == "pytorch-bf16" and (kind == "lstm" or not native_bf16("cpu")):
                continue
            if made == "pytorch":
                out[f"{kind} {backend}"] = (saved, precision)
            elif made == "onnx":
                out[f"{kind} {backend}"] = (export_onnx(saved, folder / f"{kind}-onnx", check=False), None)
            else:
                out[f"{kind} {backend}"] = (export_onnx(saved, folder / f"{kind}-int8", quantize="int8",
                                                        check=False), None)
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(model_dir: Path, port: int, precision: str | None = None) -> subprocess.Popen:
    """``unigen serve`` in its own process (its log in ``model_dir/server.log``), once /health answers."""
    import httpx

    log = open(model_dir / "server.log", "wb")  # the child keeps it open for its lifetime
    extra = ["--precision", precision] if precision else []
    proc = subprocess.Popen([sys.executable, "-m", "unigen", "serve", str(model_dir), "--port", str(port),
                             "--max-texts", "64", "--max-chars", "100000", "--quiet", *extra],
                            stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = (model_dir / "server.log").read_text(errors="replace")[-2000:]
            sys.exit(f"server for {model_dir} exited: {tail}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    proc.kill()
    sys.exit(f"server for {model_dir} did not start in 180 s")


def drive(port: int, texts: list[str], batch: int, concurrency: int, requests: int,
          limit_s: float) -> dict[str, float]:
    """``concurrency`` threads, each sending up to ``requests`` requests of ``batch`` texts (stopping at
    ``limit_s``); returns requests/s, texts/s, p50/p99 latency (ms) and the request count."""
    import httpx

    url = f"http://127.0.0.1:{port}/predict"
    stop_at = math.inf

    def worker(w: int, requests: int = requests) -> list[float]:
        latencies = []
        with httpx.Client(timeout=120) as client:
            for r in range(requests):
                if time.monotonic() > stop_at:
                    break
                start = (w * requests + r) * batch % len(texts)
                chunk = [texts[(start + i) % len(texts)] for i in range(batch)]
                tic = time.perf_counter()
                response = client.post(url, json={"texts": chunk})
                latencies.append(time.perf_counter() - tic)
                response.raise_for_status()
        return latencies

    worker(0, 2)  # warm-up: two requests, outside the cell's time limit
    stop_at = time.monotonic() + limit_s
    tic = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        lat = np.array([x for part in pool.map(worker, range(concurrency)) for x in part])
    wall = time.perf_counter() - tic
    return {"requests": len(lat), "req_s": len(lat) / wall, "texts_s": len(lat) * batch / wall,
            "p50_ms": 1000 * float(np.percentile(lat, 50)), "p99_ms": 1000 * float(np.percentile(lat, 99))}


def prompting_speed(texts: list[str], n: int, rule: str) -> dict[str, float]:
    from unigen.config import load_config
    from unigen.evaluation.evaluate import load_classifier

    cfg = load_config(None, ["device=cpu", f"scoring.rule={rule}"])
    classifier = load_classifier(f"prompt:{cfg.generator}", cfg, progress=False)
    classifier.predict_ids(texts[:4])  # warm-up
    tic = time.perf_counter()
    classifier.predict_ids(texts[:n])
    seconds = time.perf_counter() - tic
    return {"name": classifier.name, "rule": rule + (" (calibrated)" if rule == "verbalizer" and
                                                     cfg.scoring.calibrate else ""),
            "texts": n, "texts_s": n / seconds}


def render(results: dict, prompting: dict, args: argparse.Namespace, seconds: float) -> str:
    lines = [
        "# Serving performance",
        "",
        "Command: `" + shlex.join([".venv/bin/python", "scripts/bench_serve.py", *sys.argv[1:]]) + "`",
        "",
        f"Machine: {os.cpu_count()} CPU cores, {platform.processor() or platform.machine()}, Python "
        f"{platform.python_version()}; server and clients on the same machine (loopback). "
        f"{args.concurrency} concurrent clients, up to {args.requests} requests each per cell; texts: real "
        "test-set texts (all seven sets, mixed), cut at 128 tokens by the model. Task models untrained at "
        "the trained shapes (speed does not depend on the weights)." + (f" {args.note}" if args.note else ""),
        "",
        "| model | backend | batch | requests | requests/s | texts/s | p50 ms | p99 ms | x prompting |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for key, by_batch in results.items():
        kind, backend = key.split(" ")
        for batch, r in by_batch.items():
            ratio = r["texts_s"] / prompting["texts_s"] if prompting else float("nan")
            lines.append(f"| {kind} | {backend} | {batch} | {r['requests']} | {r['req_s']:.1f} | "
                         f"{r['texts_s']:.1f} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} | {ratio:.0f} |")
    if prompting:
        lines += ["", f"Prompting baseline: {prompting['name']} ({prompting['rule']} rule), in-process, "
                  f"{prompting['texts']} texts: {prompting['texts_s']:.2f} texts/s."]
    lines += ["", "Texts/s at batch 32, against PyTorch and against prompting:", ""]
    for kind in dict.fromkeys(key.split(" ")[0] for key in results):
        torch_r = results.get(f"{kind} pytorch", {}).get(32)
        best = max((r[32]["texts_s"], key.split(" ")[1]) for key, r in results.items()
                   if key.split(" ")[0] == kind and 32 in r)
        line = f"* {kind}: fastest {best[1]} {best[0]:.1f} texts/s"
        if torch_r:
            line += f" = {best[0] / torch_r['texts_s']:.2f}x PyTorch"
        if prompting:
            line += f" = {best[0] / prompting['texts_s']:.1f}x prompting"
        lines.append(line)
    lines += ["", f"Whole run: {seconds:.0f} s.", ""]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="mpnet-base,minilm-l6,lstm", help="comma list of task models")
    parser.add_argument("--concurrency", type=int, default=4, help="concurrent client threads")
    parser.add_argument("--requests", type=int, default=40, help="requests per client and cell")
    parser.add_argument("--limit-s", type=float, default=60.0, help="time limit of one cell")
    parser.add_argument("--prompt-texts", type=int, default=64, help="texts classified by prompting")
    parser.add_argument("--no-prompting", action="store_true", help="skip the prompting baseline")
    parser.add_argument("--prompt-rule", default="verbalizer", choices=("verbalizer", "nll"),
                        help="scoring rule of the prompting baseline (verbalizer: calibrated, the labeler)")
    parser.add_argument("--backends", default=",".join(BACKENDS),
                        help=f"comma list of backends ({', '.join(BACKENDS)}); pytorch is float32")
    parser.add_argument("--output", default="results/serving.md")
    parser.add_argument("--note", default="", help="a sentence on the conditions, added to the report")
    args = parser.parse_args()
    backends = args.backends.split(",")
    if unknown := [b for b in backends if b not in BACKENDS]:
        parser.error(f"unknown backend(s) {', '.join(unknown)}: use {', '.join(BACKENDS)}")
    start = time.perf_counter()
    texts = real_texts(200)
    results: dict[str, dict[int, dict[str, float]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        folders = build_models(args.models.split(","), texts, Path(tmp), backends)
        for key, (folder, precision) in folders.items():
            port = free_port()
            proc = start_server(folder, port, precision)
            try:
                results[key] = {}
                for batch in BATCHES:
                    results[key][batch] = r = drive(port, texts, batch, args.concurrency, args.requests,
                                                    args.limit_s)
                    print(f"{key:22s} batch {batch:2d}: {r['texts_s']:8.1f} texts/s, "
                          f"p50 {r['p50_ms']:.1f} ms, "
                          f"p99 {r['p99_ms']:.1f} ms", flush=True)
            finally:
                proc.terminate()
                proc.wait(timeout=30)
    prompting = {} if args.no_prompting else prompting_speed(texts, args.prompt_texts, args.prompt_rule)
    if prompting:
        print(f"prompting: {prompting['texts_s']:.2f} texts/s", flush=True)
    report = render(results, prompting, args, time.perf_counter() - start)
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(report, encoding="utf-8")
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
