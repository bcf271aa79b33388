"""int8 against float32 on a trained task model: label agreement with PyTorch on real test texts and texts/s.

    python scripts/int8_agreement.py MODEL_DIR [--per-set 300] [--speed-texts 320] [--rounds 2]
        [--variants 0,0.08,0.17]

Exports MODEL_DIR as float32 ONNX, as ``--quantize int8`` (the shipped recipe) and by the other int8
recipes of ``--variants`` (each a share of the encoder's MatMuls kept float32, the most sensitive first;
``0``: ONNX Runtime's dynamic quantization of every encoder MatMul; or ``nbits<B>-<block>``: block-wise
weight-only B-bit weights with int8 compute, see ``_weight_only``; and, where the CPU computes bf16
natively, PyTorch under bf16 autocast, the evaluation engine), classifies ``--per-set`` texts of
each of the seven test sets (at the model's token limit) with each and with PyTorch, and times batch-32
classification of ``--speed-texts`` of them, the backends interleaved, ``--rounds`` times (median).
Prints a JSON record.
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
from unigen.evaluation.evaluate import AutocastModel
from unigen.export.onnx_export import (
    ONNX_NAME,
    OPSET,
    export_graph,
    export_onnx,
    int8_plan,
    quantize_graph,
)
from unigen.export.onnx_model import ONNX_CONFIG, OnnxTaskModel
from unigen.files import sha256_file
from unigen.registry import native_bf16
from unigen.tam.model import TaskModel


def int8_variant(model: TaskModel, fp32: Path, out: Path, variant: str) -> Path:
    """An int8 export of ``model`` beside the float32 folder ``fp32`` that keeps the share ``variant`` of the
    encoder's MatMuls float32 (``"0"``: every MatMul int8, ONNX Runtime's default)."""
    out.mkdir()
    for f in fp32.iterdir():
        if f.name != ONNX_NAME:
            (out / f.name).write_bytes(f.read_bytes())
    export_graph(model, out / ONNX_NAME, OPSET)
    if variant.startswith("nbits"):
        _weight_only(out / ONNX_NAME, int8_plan(model, out / ONNX_NAME, keep_float_share=0.0), variant)
    else:
        quantize_graph(out / ONNX_NAME, int8_plan(model, out / ONNX_NAME, keep_float_share=float(variant)))
    record = json.loads((out / ONNX_CONFIG).read_text(encoding="utf-8"))  # the copied float32 record
    if "sha256" in record:  # the variant's graph is another file: record its digest, as the exporter does
        record["sha256"][ONNX_NAME] = sha256_file(out / ONNX_NAME)
        (out / ONNX_CONFIG).write_text(json.dumps(record, indent=2), encoding="utf-8")
    return out


def _weight_only(path: Path, plan: dict, variant: str) -> None:
    """``nbits<B>-<block>``: block-wise weight-only quantization of the plan's MatMuls to B bits
    (``MatMulNBits``, symmetric, int8 compute: ``accuracy_level=4``; needs PyPI ``onnx_ir``)."""
    import onnx
    from onnxruntime.quantization.matmul_nbits_quantizer import (
        DefaultWeightOnlyQuantConfig,
        MatMulNBitsQuantizer,
    )

    bits, block = (int(x) for x in variant[len("nbits"):].split("-"))
    config = DefaultWeightOnlyQuantConfig(block_size=block, is_symmetric=True, accuracy_level=4, bits=bits)
    quantizer = MatMulNBitsQuantizer(onnx.load(str(path)), bits=bits, block_size=block, is_symmetric=True,
                                     accuracy_level=4, nodes_to_include=plan["nodes_to_quantize"],
                                     algo_config=config)
    quantizer.process()
    quantizer.model.save_model_to_file(str(path), use_external_data_format=False)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model")
    ap.add_argument("--data-dir", default="../shared/datasets")
    ap.add_argument("--per-set", type=int, default=300)
    ap.add_argument("--speed-texts", type=int, default=320)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--variants", default="0,0.08,0.17",
                    help="other int8 recipes to compare, comma-separated (see int8_variant)")
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
        logging.disable(logging.WARNING)
        models = {"pytorch": torch_model, "onnx-fp32": OnnxTaskModel.from_pretrained(fp32),
                  "onnx-int8": OnnxTaskModel.from_pretrained(int8)}
        if native_bf16("cpu"):  # the evaluation engine's bf16 autocast, where the CPU computes bf16
            models["pytorch-bf16"] = AutocastModel(torch_model)
        for variant in filter(None, args.variants.split(",")):
            models[f"onnx-int8-{variant}"] = OnnxTaskModel.from_pretrained(
                int8_variant(torch_model, fp32, Path(tmp) / variant, variant))
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
        for name in models:
            if name.startswith("onnx-int8-"):
                record[f"{name}_vs_pytorch"] = round(tps[name] / tps["pytorch"], 2)
    print(json.dumps(record, indent=1))


if __name__ == "__main__":
    main()
