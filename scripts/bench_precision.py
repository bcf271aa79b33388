"""bf16 autocast against float32 by batch size, in-process (no server): where autocast starts to pay.

    PYTHONPATH=src .venv/bin/python scripts/bench_precision.py [--models minilm-l6,mpnet-base]
        [--batches 1,2,4,8,16,32] [--rounds 5]

Untrained task models at the trained shapes (mean pooling, 128-token limit; speed does not depend on the
weights), real test texts of all seven sets mixed. For every batch size the two precisions run in
alternation, ``--rounds`` times each, so both see the same machine load; printed: the median seconds per
call and the ratio float32 / bf16 (> 1: bf16 faster). Meaningful only on a CPU with native bf16.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_serve import LABELS, real_texts  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="minilm-l6,mpnet-base")
    p.add_argument("--batches", default="1,2,4,8,16,32")
    p.add_argument("--rounds", type=int, default=5)
    args = p.parse_args()
    import torch

    from unigen.registry import native_bf16
    from unigen.tam.model import TaskModel

    print(f"native bf16: {native_bf16('cpu')}; torch threads {torch.get_num_threads()}")
    texts = real_texts(50)
    for kind in args.models.split(","):
        model = TaskModel.build(kind, LABELS, max_length=128, pooling="mean", seed=0)
        for batch in (int(b) for b in args.batches.split(",")):
            times: dict[str, list[float]] = {"fp32": [], "bf16": []}
            for r in range(args.rounds + 1):
                chunk = texts[r * batch:(r + 1) * batch]
                for precision in ("fp32", "bf16"):
                    tic = time.perf_counter()
                    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
                        model.predict_proba(chunk, batch_size=64)
                    if r:  # round 0 warms up
                        times[precision].append(time.perf_counter() - tic)
            fp32, bf16 = statistics.median(times["fp32"]), statistics.median(times["bf16"])
            print(f"{kind:11s} batch {batch:3d}: fp32 {1000 * fp32:8.1f} ms, bf16 {1000 * bf16:8.1f} ms, "
                  f"fp32/bf16 {fp32 / bf16:.2f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
