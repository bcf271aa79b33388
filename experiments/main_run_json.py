"""Add one measured run of the main job to ``results/main_run.json`` (one entry per seed, replaced).

    PYTHONPATH=src .venv/bin/python experiments/main_run_json.py --seed 42 --workdir runs/default \\
        --setup-s 190 --run-s 1500 --commit f3383d4 [--full "UniGen mpnet-base=results/full/mpnet-42.json"]

Reads the run's table (``WORKDIR/results.json``: task models, VADER, Prompting), writes each row as
``{dataset: accuracy %, ..., "average": mean}`` with the CLI's dataset names, and whether its sets were full
or subsampled (``n`` of ``N`` rows). ``--full NAME=FILE`` adds the full-set accuracies of a row measured
separately by ``experiments/full_eval.py``. Timings are the caller's measurements (wall seconds of
``scripts/setup.sh`` and of ``unigen run``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from unigen.evaluation.datasets import load_dataset
from unigen.evaluation.paper import TEST_SETS

sys.path.insert(0, str(Path(__file__).parent))
from full_eval import cpu_name  # noqa: E402


def _set_sizes() -> dict[str, int]:
    return {name: len(load_dataset(name).texts) for name in TEST_SETS}


def run_entry(args: argparse.Namespace) -> dict:
    results = json.loads((Path(args.workdir) / "results.json").read_text())
    sizes = _set_sizes()
    rows = {name: {**{s: round(100 * r[s]["accuracy"], 2) for s in TEST_SETS if s in r},
                   "average": round(100 * r["average"], 2)} for name, r in results.items()}
    sampling = {name: {s: f"{r[s]['n']}/{sizes[s]}" for s in TEST_SETS if s in r}
                for name, r in results.items()}
    full = {}
    for spec in args.full:
        name, path = spec.split("=", 1)
        record = json.loads(Path(path).read_text())
        full[name] = {**{k: round(100 * v["accuracy"], 2) for k, v in record["sets"].items()},
                      "average": round(100 * record["average"], 2), "sets_evaluated": len(record["sets"])}
    subsampled = any(results[n][s]["n"] < sizes[s] for n in results for s in TEST_SETS if s in results[n])
    return {"seed": args.seed, "commit": args.commit, "cpu": args.cpu or cpu_name(),
            "setup_s": args.setup_s, "run_s": args.run_s, "unit": "accuracy, %",
            "evaluation": "subsampled (n/N rows per set in 'rows_evaluated')" if subsampled else "full",
            "table": rows, "rows_evaluated": sampling,
            "full_sets": full, "note": args.note}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--workdir", required=True)
    p.add_argument("--setup-s", type=float)
    p.add_argument("--run-s", type=float)
    p.add_argument("--commit", default="")
    p.add_argument("--cpu", default="")
    p.add_argument("--note", default="")
    p.add_argument("--full", action="append", default=[], help="NAME=FILE from experiments/full_eval.py")
    p.add_argument("--output", default="results/main_run.json")
    args = p.parse_args()
    out = Path(args.output)
    data = json.loads(out.read_text()) if out.is_file() else {"runs": []}
    entry = run_entry(args)
    data["runs"] = sorted([r for r in data["runs"] if r["seed"] != args.seed] + [entry],
                          key=lambda r: r["seed"] != 42)
    out.write_text(json.dumps(data, indent=1) + "\n")
    print(json.dumps(entry, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
