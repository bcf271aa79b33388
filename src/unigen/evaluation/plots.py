"""Per-set accuracy bars: every evaluated model side by side on each test set, plus the mean.

``unigen evaluate --plot FILE.png`` draws the evaluated model beside the paper's Prompting row;
``unigen run`` saves ``results.png`` in its work folder with the task models and the baselines.
Needs matplotlib (``pip install 'unigen-sentiment[plot]'``); drawn with the Agg backend, no display.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from unigen.evaluation.paper import SHORT_NAMES, TEST_SETS, paper_mean
from unigen.files import atomic_write

__all__ = ["paper_values", "plot_accuracy"]

#: colours of the task models first, then grey tones for the baselines
PALETTE = ("#2f6fdf", "#2e9d5b", "#e08a1e", "#8e44ad", "#c0392b", "#16a085")
BASELINE_GREYS = ("#7f8c8d", "#a6acaf", "#c9cdd0", "#566163")


def _is_baseline(name: str) -> bool:
    lowered = name.lower()
    return lowered.startswith(("vader", "prompting", "paper", "prompt"))


def plot_accuracy(rows: Mapping[str, Mapping[str, Any]], path: str | Path, *,
                  paper: Mapping[str, float] | None = None, title: str = "") -> Path:
    """Grouped bars of accuracy (%) per test set and their mean for every row of ``rows``
    (``{name: {set: {"accuracy", ...}, "average"}}``); ``paper`` (``{set: accuracy %, "average"}``) is
    drawn as one more, hatched row. Writes a PNG (atomically) and returns its path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    sets = [s for s in TEST_SETS if any(s in r for r in rows.values())]
    sets += sorted({k for r in rows.values() for k in r if k not in sets and k != "average"})
    columns = [*sets, "average"]
    series: list[tuple[str, list[float], str, str]] = []  # name, values, colour, hatch
    models = [n for n in rows if not _is_baseline(n)]
    baselines = [n for n in rows if _is_baseline(n)]
    for i, name in enumerate(models):
        series.append((name, [_acc(rows[name], c) for c in columns], PALETTE[i % len(PALETTE)], ""))
    for i, name in enumerate(baselines):
        series.append((name, [_acc(rows[name], c) for c in columns], BASELINE_GREYS[i % 4], ""))
    if paper:
        series.append(("paper: Prompting GPT2-XL", paper_values(paper, sets), "#ffffff", "///"))
    width = 0.8 / max(len(series), 1)
    x = np.arange(len(columns))
    fig, ax = plt.subplots(figsize=(max(7.0, 1.15 * len(columns) + 0.25 * len(series)), 4.2), dpi=120)
    for k, (name, values, colour, hatch) in enumerate(series):
        offset = (k - (len(series) - 1) / 2) * width
        bars = ax.bar(x + offset, values, width, label=name, color=colour, edgecolor="#333333",
                      linewidth=0.5, hatch=hatch)
        if len(series) <= 3:
            ax.bar_label(bars, fmt="%.0f", fontsize=7, padding=1)
    ax.axhline(50, color="#999999", linestyle=":", linewidth=1)
    ax.text(-0.45, 50.5, "chance", fontsize=7, color="#777777", ha="left", va="bottom")
    ax.set_xticks(x, [SHORT_NAMES.get(c, "Mean" if c == "average" else c) for c in columns])
    ax.axvspan(len(columns) - 1.5, len(columns) - 0.5, color="#f0f2f5", zorder=0)
    ax.set_ylim(0, 100)
    ax.set_ylabel("accuracy (%)")
    ax.set_title(title or "Accuracy per test set", fontsize=11)
    ax.spines[["top", "right"]].set_visible(False)
    ax.legend(fontsize=8, ncols=min(len(series), 3), loc="lower center", bbox_to_anchor=(0.5, -0.32),
              frameon=False)
    fig.tight_layout()
    path = Path(path)
    atomic_write(path, lambda f: fig.savefig(f, format="png"))
    plt.close(fig)
    return path


def paper_values(paper: Mapping[str, float], sets: list[str]) -> list[float]:
    """The paper's bars for ``sets`` and, last, its mean over those same sets (NaN, no bar, where it has no
    number): never its seven-set mean beside a mean over fewer sets."""
    mean = paper_mean(dict(paper), sets)
    return [paper.get(s, float("nan")) for s in sets] + [float("nan") if mean is None else mean]


def _acc(result: Mapping[str, Any], column: str) -> float:
    value = result.get(column)
    if column == "average":
        return 100 * float(value) if value is not None else float("nan")
    return 100 * float(value["accuracy"]) if isinstance(value, Mapping) else float("nan")
