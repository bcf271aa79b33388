"""A task model on the seven FULL test sets, resumable set by set, with every text's probabilities saved.

    PYTHONPATH=src .venv/bin/python experiments/full_eval.py MODEL_DIR OUT_PREFIX [--engine auto]

Writes ``OUT_PREFIX.json`` (per set: accuracy, macro-F1, n, seconds; the plain mean of the accuracies; the
engine and the CPU) after every set, and ``OUT_PREFIX.<set>.npy`` with the set's ``(n, C)`` probabilities, so
a killed run continues with the next unfinished set. The probabilities serve post-hoc analyses (for example
distillation targets for a student on the texts of one half of a set). Uses the library's engine choice
(``evaluate.engine=auto``: bf16 autocast where the CPU has native bf16) and its dataset loader.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

from unigen.evaluation.datasets import SET_DOMAIN, load_dataset
from unigen.evaluation.evaluate import accuracy, eval_engine, load_task_model, macro_f1
from unigen.inference import model_architecture


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model")
    p.add_argument("out")
    p.add_argument("--engine", default="auto")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--sets", default=",".join(SET_DOMAIN))
    args = p.parse_args(argv)
    out_json = Path(f"{args.out}.json")
    out_json.parent.mkdir(parents=True, exist_ok=True)
    record = json.loads(out_json.read_text()) if out_json.is_file() else {"sets": {}}
    engine = eval_engine(args.engine, "auto", model_architecture(args.model))
    model = load_task_model(args.model, engine)
    record.update(model=str(args.model), engine=engine, cpu=cpu_name())
    for name in args.sets.split(","):
        if name in record["sets"]:
            continue
        ds = load_dataset(name)
        tic = time.perf_counter()
        probs = np.asarray(model.predict_proba(ds.texts, batch_size=args.batch_size))
        pred = probs.argmax(1)
        np.save(f"{args.out}.{name}.npy", probs.astype(np.float32))
        record["sets"][name] = {"accuracy": accuracy(ds.labels, pred), "macro_f1": macro_f1(ds.labels, pred),
                                "n": len(ds), "seconds": round(time.perf_counter() - tic, 1),
                                "positive_share": float(pred.mean())}
        accs = [r["accuracy"] for r in record["sets"].values()]
        record["average"] = float(np.mean(accs))
        out_json.write_text(json.dumps(record, indent=1) + "\n")
        print(f"{name}: {100 * record['sets'][name]['accuracy']:.2f} ({len(ds)} texts, "
              f"{record['sets'][name]['seconds']} s)", flush=True)
    print(f"average over {len(record['sets'])} sets: {100 * record['average']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
