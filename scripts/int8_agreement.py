"""int8 against float32 on a trained task model: label agreement with PyTorch on real test texts and texts/s.

    python scripts/int8_agreement.py MODEL_DIR [--per-set 300] [--speed-texts 320] [--rounds 2]

Exports MODEL_DIR as float32 ONNX, as ``--quantize int8`` (the shipped recipe) and as ONNX Runtime's plain
dynamic quantization of every MatMul (the old recipe), classifies ``--per-set`` texts of each of the seven
test sets (at the model's token limit) with each and with PyTorch, and times batch-32 classification of
``--speed-texts`` of them, the backends interleaved, ``--rounds`` times (median). Prints a JSON record.
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
from pathlib import Path

import numpy as np

from unigen.evaluation.datasets import TEST_SETS, load_dataset
from unigen.export.onnx_export import export_onnx
from unigen.onnx import OnnxTaskModel
from unigen.tam.model import TaskModel


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model")
    ap.add_argument("--data-dir", default="../shared/datasets")
    ap.add_argument("--per-set", type=int, default=300)
    ap.add_argument("--speed-texts", type=int, default=320)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    texts: list[str] = []
    for name in TEST_SETS:
        texts += list(load_dataset(name, data_dir=args.data_dir, limit=args.per_set, seed=0).texts)
    torch_model = TaskModel.from_pretrained(args.model).eval()
    with tempfile.TemporaryDirectory() as tmp:
        fp32 = export_onnx(args.model, Path(tmp) / "fp32", check=False)
        tic = time.perf_counter()
        int8 = export_onnx(args.model, Path(tmp) / "int8", quantize="int8", check=False)
        export_s = time.perf_counter() - tic
        plain = Path(tmp) / "plain"
        plain.mkdir()
        for f in fp32.iterdir():
            if f.name != "model.onnx":
                (plain / f.name).write_bytes(f.read_bytes())
        from onnxruntime.quantization import QuantType, quantize_dynamic
        logging.disable(logging.WARNING)
        quantize_dynamic(str(fp32 / "model.onnx"), str(plain / "model.onnx"), weight_type=QuantType.QInt8,
                         per_channel=True, op_types_to_quantize=["MatMul"])
        models = {"pytorch": torch_model, "onnx-fp32": OnnxTaskModel.from_pretrained(fp32),
                  "onnx-int8": OnnxTaskModel.from_pretrained(int8),
                  "onnx-int8-all-matmuls": OnnxTaskModel.from_pretrained(plain)}
        reference = torch_model.predict_proba(texts, batch_size=32).argmax(1)
        record: dict = {"texts": len(texts), "per_set": args.per_set, "export_int8_s": round(export_s, 1),
                        "int8": json.loads((int8 / "unigen_onnx.json").read_text())["int8"],
                        "agreement": {}, "texts_per_s": {}}
        for name, m in models.items():
            if name != "pytorch":
                labels = m.predict_proba(texts, batch_size=32).argmax(1)
                record["agreement"][name] = round(float((labels == reference).mean()), 4)
        sub = [texts[i] for i in np.random.default_rng(0).choice(len(texts), args.speed_texts, replace=False)]
        times: dict[str, list[float]] = {k: [] for k in models}
        for m in models.values():
            m.predict_proba(sub[:32], batch_size=32)
        for _ in range(args.rounds):
            for name, m in models.items():
                tic = time.perf_counter()
                m.predict_proba(sub, batch_size=32)
                times[name].append(time.perf_counter() - tic)
        for name, t in times.items():
            record["texts_per_s"][name] = round(len(sub) / float(np.median(t)), 1)
        tps = record["texts_per_s"]
        record["int8_vs_pytorch"] = round(tps["onnx-int8"] / tps["pytorch"], 2)
        record["int8_vs_fp32"] = round(tps["onnx-int8"] / tps["onnx-fp32"], 2)
        record["int8_vs_all_matmuls"] = round(tps["onnx-int8"] / tps["onnx-int8-all-matmuls"], 2)
    print(json.dumps(record, indent=1))


if __name__ == "__main__":
    main()
