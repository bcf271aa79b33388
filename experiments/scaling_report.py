"""Render the scaling study (``experiments/scaling.yaml``) as ``results/scaling.md`` and a PNG plot.

Reads the records that ``unigen experiment experiments/scaling.yaml`` writes (one per task model and
cell), groups them by task model and target size (``generate.samples_per_label`` x labels, the rows that
survive the relabel filter with ``relabel.until_kept``), and reports the seven-set mean accuracy (mean and
standard deviation over seeds), the training rows and the wall time of every stage.

    python experiments/scaling_report.py [--records results/scaling.json] [--output results/scaling.md]
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections import defaultdict
from pathlib import Path

COMMAND = "unigen experiment experiments/scaling.yaml && python experiments/scaling_report.py"
STAGES = ("generate+relabel", "weight", "train", "evaluate")


def target_rows(record: dict) -> int:
    """Rows the cell asked for: ``samples_per_label`` per label (two labels)."""
    for item in record["settings"]:
        if item.startswith("generate.samples_per_label="):
            return 2 * int(item.split("=", 1)[1])
    raise ValueError(f"record without generate.samples_per_label: {record['settings']}")


def stage_seconds(record: dict) -> dict[str, float]:
    """Seconds per stage of the cell; train/evaluate are this record's task model's."""
    timings = record.get("timings", {})
    return {
        "generate+relabel": timings.get("generate+relabel", 0.0),
        "weight": timings.get("weight", 0.0),
        "train": timings.get(f"train {record['tam']}", 0.0),
        "evaluate": timings.get(f"evaluate {record['tam']}", 0.0),
    }


def summarise(records: list[dict]) -> list[dict]:
    """One row per (task model, target size): accuracy over seeds, rows, median stage seconds."""
    groups: dict[tuple[str, int], list[dict]] = defaultdict(list)
    for rec in records:
        groups[(rec["tam"], target_rows(rec))].append(rec)
    rows = []
    for (tam, target), recs in sorted(groups.items()):
        accs = [100 * r["average"] for r in recs]
        secs = [stage_seconds(r) for r in recs]
        rows.append({
            "tam": tam, "target": target, "seeds": sorted(r["seed"] for r in recs),
            "mean": statistics.mean(accs), "std": statistics.stdev(accs) if len(accs) > 1 else 0.0,
            "train_rows": statistics.mean(r.get("train_rows") or 0 for r in recs),
            "seconds": {s: statistics.median(x[s] for x in secs) for s in STAGES},
        })
    return rows


def render(rows: list[dict], plot_name: str) -> str:
    lines = [
        "# Scaling study: accuracy against training rows",
        "",
        f"Command: `{COMMAND}` (resumable: finished cells are skipped, stages are shared).",
        "Seven-set mean accuracy of UniGen task models on the default settings (`configs/default.yaml`),",
        "generated until the target number of rows survive relabeling (`relabel.until_kept=true`), each test",
        "set cut to the same seeded 1,000-row subsample (`evaluate.limit=1000`, `evaluate.sample_seed=0`).",
        "Wall time per stage in seconds (median over seeds; a stage shared with an earlier cell shows ~0).",
        "",
        f"![accuracy against rows]({plot_name})",
        "",
        "| task model | target rows | training rows | seeds | 7-set mean (%) | "
        + " | ".join(f"{s} s" for s in STAGES) + " |",
        "|---|---|---|---|---|" + "---|" * len(STAGES),
    ]
    for r in rows:
        acc = f"{r['mean']:.2f} ± {r['std']:.2f}" if len(r["seeds"]) > 1 else f"{r['mean']:.2f}"
        secs = " | ".join(f"{r['seconds'][s]:.0f}" for s in STAGES)
        seeds = ",".join(map(str, r["seeds"]))
        lines.append(f"| {r['tam']} | {r['target']:,} | {r['train_rows']:,.0f} | {seeds} | {acc} | {secs} |")
    return "\n".join(lines) + "\n"


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for tam in sorted({r["tam"] for r in rows}):
        pts = [r for r in rows if r["tam"] == tam]
        ax.errorbar([r["train_rows"] for r in pts], [r["mean"] for r in pts], yerr=[r["std"] for r in pts],
                    marker="o", capsize=3, label=f"UniGen {tam}")
    ax.set_xscale("log")
    ax.set_xlabel("training rows (kept after relabeling)")
    ax.set_ylabel("seven-set mean accuracy (%)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=Path, default=Path("results/scaling.json"))
    parser.add_argument("--output", type=Path, default=Path("results/scaling.md"))
    args = parser.parse_args(argv)
    rows = summarise(json.loads(args.records.read_text()))
    png = args.output.with_suffix(".png")
    plot(rows, png)
    args.output.write_text(render(rows, png.name))
    print(f"wrote {args.output} and {png} ({len(rows)} points)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
