"""Scale-out benchmark of the generation stage: the local executor against Ray Data with 1 and 2 actors,
and the driver's peak memory at 10k and 100k rows (results/scale.md).

    python scripts/bench_scale.py [--rows 4096] [--cost-ms 0.25] [--memory-rows 10000 100000]
                                  [--memory-cost-ms 0.01] [--smollm2-rows 0] [--out results/scale.json]

The generator is a FAKE LM (:class:`FixedCostLM`, clearly not a model): every row costs a fixed time per
token (``time.sleep``, so it stands for an accelerator or a remote engine and does not load the CPUs of a
shared machine), its texts are drawn from the row seed (about 2% repeats, so de-duplication and the
ledger's redo path are exercised), and its outputs are exactly reproducible. It measures what the
executor adds and how throughput scales with actors, not a model's speed. ``--smollm2-rows N`` adds one
throughput point with the real SmolLM2-135M on the ctranslate2 backend (local vs Ray with 2 actors of 1
CPU each), which on a 2-core machine is bounded by the cores.

Every point runs in a fresh driver process (its peak RSS is that driver's own, ``ru_maxrss``, plus the
peak sampled during the stage's shard loop) connected to one local Ray instance (2 CPUs) that this script
starts; Ray's start-up is not in the timings, the actor pool's start-up is. Each Ray point also checks that
its rows equal the local executor's (same seed, same rows).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path
from tempfile import TemporaryDirectory

ROOT = Path(__file__).resolve().parents[1]
WORDS = ("good bad great awful movie film food service plot actor screen battery price phone staff "
         "really very quite not so the a this it was is and but with too").split()
REPEATS = ["Great movie.", "Terrible service.", "I loved it.", "Not worth it.", "Awful plot.",
           "Very good.", "Bad food.", "So boring.", "Five stars.", "Never again."]


class FixedCostLM:
    """FAKE LM for benchmarks: ``cost_s`` seconds per sampled token (slept), texts drawn from the seed."""

    def __init__(self, cost_s: float):
        self.cost_s = cost_s

    def sample(self, prompt: str, seeds):  # TextSampler
        from unigen.synth.sampling import Continuation

        out, tokens = [], 0
        for s in seeds:
            rng = random.Random(s)
            if s % 50 == 0:  # ~2% repeats across the run
                text = REPEATS[s % len(REPEATS)]
            else:
                text = " ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 14))).capitalize() + "."
            n = len(text.split()) + 2
            tokens += n
            out.append(Continuation(text + '"', n))
        time.sleep(tokens * self.cost_s)
        return out


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def point(args: argparse.Namespace) -> dict:
    """One measurement in this process (the driver): generate ``rows`` rows with the given executor."""
    from unigen.config import load_config
    from unigen.stages import Stage
    from unigen.synth.generate_stage import generate_into

    overrides = [f"generate.samples_per_label={args.rows // 2}", "generate.shard_size=256",
                 f"run.executor={args.executor}", f"run.actors={args.actors}", "run.cpus_per_actor=1"]
    if args.smollm2:
        overrides += ["generate.max_new_tokens=31", "generate.batch_size=64"]
    cfg = load_config(None, overrides)
    peak, stop = [_rss_mb()], threading.Event()  # RSS before the stage

    samples: list[tuple[float, float]] = []

    def watch() -> None:
        while not stop.wait(0.05):
            samples.append((time.perf_counter(), _rss_mb()))

    threading.Thread(target=watch, daemon=True).start()
    sampler = None if args.smollm2 else FixedCostLM(args.cost_ms / 1000)
    t0 = time.perf_counter()
    out = generate_into(cfg, args.workdir, progress=False, sampler=sampler)
    seconds = time.perf_counter() - t0
    stop.set()
    m = Stage.load(out).manifest
    rows = m["counts"]["rows"]
    executor = m.get("executor", {})
    if args.executor == "local":  # no pool to start: steady = the shard loop's own rate
        steady, startup = rows / m["counts"]["shard_seconds"], 0.0
    else:
        steady, startup = executor["steady_rows_per_s"], executor["startup_s"]
    loop_end = t0 + executor.get("seconds", m["counts"]["shard_seconds"]) + 0.5  # the shard loop's end
    peak_loop = max([peak[0], *[rss for t, rss in samples if t <= loop_end]])
    return {"executor": args.executor, "actors": args.actors if args.executor == "ray" else 0,
            "rows": rows, "seconds": round(seconds, 2), "rows_per_s": round(rows / seconds, 1),
            "steady_rows_per_s": round(steady, 1), "startup_s": startup,
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "peak_rss_shard_loop_mb": round(peak_loop, 1), "redone_shards": executor.get("redone_shards"),
            "attempts": m["counts"]["attempts"], "path": str(out)}


def run_point(ray_address: str, workdir: Path, *, executor: str, actors: int, rows: int, cost_ms: float,
              smollm2: bool = False) -> dict:
    cmd = [sys.executable, __file__, "--point", "--executor", executor, "--actors", str(actors),
           "--rows", str(rows), "--cost-ms", str(cost_ms), "--workdir", str(workdir)]
    cmd += ["--smollm2"] if smollm2 else []
    env = {**os.environ, "RAY_ADDRESS": ray_address,
           "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"point {executor}/{actors}/{rows} failed:\n{done.stderr[-3000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    print(json.dumps({k: v for k, v in result.items() if k != "path"}), flush=True)
    return result


def same_rows(a: str, b: str) -> bool:
    from unigen.stages import Stage

    return list(Stage.load(a).iter_rows()) == list(Stage.load(b).iter_rows())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", type=int, default=8192, help="rows of the throughput points")
    p.add_argument("--cost-ms", type=float, default=0.25, help="fake LM: milliseconds per token (throughput)")
    p.add_argument("--memory-rows", type=int, nargs="*", default=[10_000, 100_000])
    p.add_argument("--memory-cost-ms", type=float, default=0.01, help="fake LM: ms per token (memory points)")
    p.add_argument("--smollm2-rows", type=int, default=0, help="rows of the real-SmolLM2 point (0: none)")
    p.add_argument("--out", default=str(ROOT / "results" / "scale.json"))
    # one point (internal)
    p.add_argument("--point", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--executor", default="local", help=argparse.SUPPRESS)
    p.add_argument("--actors", type=int, default=1, help=argparse.SUPPRESS)
    p.add_argument("--workdir", default=None, help=argparse.SUPPRESS)
    p.add_argument("--smollm2", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.point:
        print(json.dumps(point(args)))
        return

    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    address = ray.get_runtime_context().gcs_address
    report: dict = {"machine": f"{os.cpu_count()} CPUs, shared with other jobs", "ray": ray.__version__,
                    "fake_lm": {"throughput_cost_ms_per_token": args.cost_ms,
                                "memory_cost_ms_per_token": args.memory_cost_ms},
                    "throughput": [], "memory": [], "smollm2": []}
    with TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        base = run_point(address, tmp / "t-local", executor="local", actors=0, rows=args.rows,
                         cost_ms=args.cost_ms)
        report["throughput"].append(base)
        for actors in (1, 2):
            r = run_point(address, tmp / f"t-ray{actors}", executor="ray", actors=actors, rows=args.rows,
                          cost_ms=args.cost_ms)
            r["same_rows_as_local"] = same_rows(base["path"], r["path"])
            r["speedup_vs_local"] = round(r["rows_per_s"] / base["rows_per_s"], 2)
            r["steady_speedup_vs_local"] = round(r["steady_rows_per_s"] / base["steady_rows_per_s"], 2)
            report["throughput"].append(r)
        for rows in args.memory_rows:
            r = run_point(address, tmp / f"m-{rows}", executor="ray", actors=2, rows=rows,
                          cost_ms=args.memory_cost_ms)
            report["memory"].append(r)
        Path(args.out).write_text(json.dumps(report, indent=1, default=str) + "\n")  # before the long one
        if args.smollm2_rows:
            loc = run_point(address, tmp / "s-local", executor="local", actors=0, rows=args.smollm2_rows,
                            cost_ms=0, smollm2=True)
            r = run_point(address, tmp / "s-ray2", executor="ray", actors=2, rows=args.smollm2_rows,
                          cost_ms=0, smollm2=True)
            r["same_rows_as_local"] = same_rows(loc["path"], r["path"])
            r["speedup_vs_local"] = round(r["rows_per_s"] / loc["rows_per_s"], 2)
            r["steady_speedup_vs_local"] = round(r["steady_rows_per_s"] / loc["steady_rows_per_s"], 2)
            report["smollm2"] += [loc, r]
        for section in ("throughput", "memory", "smollm2"):
            for r in report[section]:
                r.pop("path", None)
    ray.shutdown()
    Path(args.out).write_text(json.dumps(report, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
