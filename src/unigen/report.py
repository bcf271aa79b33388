"""Render experiment records in the paper's layout, with the paper's numbers beside ours.

The paper's numbers are method-spec section 7 (accuracy %, seven sets). Our task models stand in for
the paper's: MiniLM-L6 for DistilBERT, MPNet-base for RoBERTa; the LSTM has no published row.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import numpy as np

from unigen.data import DOMAINS as SET_DOMAIN
from unigen.presets import DOMAINS

SETS = ("sst2", "imdb", "rotten_tomatoes", "amazon", "yelp", "cr", "tweet")
HEADER = ("SST-2", "IMDB", "Rotten", "Amazon", "Yelp", "CR", "Tweet", "Avg")
PAPER_SLOT = {"minilm-l6": "distilbert", "mpnet-base": "roberta"}
BASELINES = [(method, domain) for method in ("zerogen", "sungen") for domain in DOMAINS]  # the main table's order


def _row(*values: float) -> tuple[float, ...]:
    return tuple(values)


#: (tam slot, method, domain) -> 7 accuracies + average (method-spec 7.1)
PAPER_MAIN: dict[tuple[str, str, str | None], tuple[float, ...]] = {
    ("distilbert", "zerogen", "movie"): _row(80.06, 69.13, 74.73, 73.02, 72.77, 73.59, 74.83, 74.02),
    ("distilbert", "sungen", "movie"): _row(82.43, 70.59, 76.37, 74.13, 73.56, 75.14, 75.96, 75.45),
    ("distilbert", "zerogen", "products"): _row(71.04, 64.99, 65.57, 74.54, 71.89, 74.57, 71.93, 70.65),
    ("distilbert", "sungen", "products"): _row(72.35, 65.95, 66.84, 76.92, 74.98, 75.84, 73.01, 72.27),
    ("distilbert", "zerogen", "restaurant"): _row(77.32, 65.47, 68.86, 74.01, 77.94, 74.89, 73.74, 73.18),
    ("distilbert", "sungen", "restaurant"): _row(78.93, 67.12, 69.92, 74.93, 80.67, 76.06, 75.28, 74.70),
    ("distilbert", "zerogen", "electronics"): _row(73.77, 66.14, 66.78, 72.38, 73.21, 78.82, 74.58, 72.24),
    ("distilbert", "sungen", "electronics"): _row(74.49, 67.19, 68.29, 73.49, 75.34, 80.49, 75.37, 73.52),
    ("distilbert", "zerogen", "tweet"): _row(73.98, 66.58, 67.43, 72.88, 71.86, 75.68, 80.86, 72.75),
    ("distilbert", "sungen", "tweet"): _row(75.12, 67.53, 69.06, 73.64, 72.73, 78.17, 82.46, 74.10),
    ("distilbert", "unigen", None): _row(77.67, 67.81, 73.16, 75.06, 74.81, 79.86, 81.41, 75.68),
    ("roberta", "zerogen", "movie"): _row(84.38, 73.03, 78.38, 77.38, 76.83, 77.36, 77.94, 77.90),
    ("roberta", "sungen", "movie"): _row(85.24, 74.09, 79.19, 78.56, 77.61, 78.21, 79.72, 78.95),
    ("roberta", "zerogen", "products"): _row(79.14, 71.16, 70.92, 79.94, 75.79, 76.35, 80.17, 76.21),
    ("roberta", "sungen", "products"): _row(81.51, 71.28, 72.67, 81.50, 77.76, 78.55, 81.94, 77.87),
    ("roberta", "zerogen", "restaurant"): _row(82.87, 70.71, 69.58, 78.61, 81.47, 76.43, 79.51, 77.03),
    ("roberta", "sungen", "restaurant"): _row(83.65, 71.40, 71.05, 79.42, 82.72, 77.60, 80.92, 78.11),
    ("roberta", "zerogen", "electronics"): _row(76.82, 69.42, 67.89, 75.02, 76.53, 81.24, 76.51, 74.78),
    ("roberta", "sungen", "electronics"): _row(77.51, 71.23, 68.77, 76.91, 78.33, 83.49, 79.03, 76.47),
    ("roberta", "zerogen", "tweet"): _row(78.43, 68.31, 72.25, 78.09, 74.61, 79.08, 82.96, 76.25),
    ("roberta", "sungen", "tweet"): _row(82.19, 70.62, 73.21, 79.84, 76.27, 81.46, 83.25, 78.12),
    ("roberta", "unigen", None): _row(84.86, 72.24, 78.82, 80.79, 79.15, 86.37, 87.89, 81.45),
}
PAPER_PROMPTING = _row(82.15, 70.26, 77.56, 79.06, 78.04, 80.30, 80.38, 78.25)  # GPT2-XL
PAPER_ABLATIONS: dict[str, tuple[float, ...]] = {  # DistilBERT, method-spec 7.2
    "": PAPER_MAIN[("distilbert", "unigen", None)],
    "hard-relabel": _row(77.18, 67.18, 72.37, 72.91, 72.95, 78.14, 80.39, 74.45),
    "no-relabel": _row(76.34, 66.58, 71.78, 70.63, 70.97, 76.59, 79.62, 73.22),
    "no-denoise-bank": _row(77.06, 67.13, 72.04, 74.69, 73.66, 78.47, 80.84, 74.84),
    "no-scl": _row(75.53, 66.10, 69.63, 71.43, 69.58, 77.22, 79.31, 72.69),
    "combined-prompts": _row(74.19, 63.16, 71.08, 73.62, 72.93, 78.05, 78.02, 73.01),
}
PAPER_ZEROGEN_RELABEL = {  # DistilBERT, movie domain, method-spec 7.4
    "none": PAPER_MAIN[("distilbert", "zerogen", "movie")],
    "hard": _row(80.72, 69.25, 73.98, 73.41, 73.18, 73.76, 74.91, 74.17),
    "soft": _row(81.79, 70.40, 75.32, 73.65, 73.31, 74.72, 75.14, 74.90),
}
PAPER_GENERATORS = {"gpt2-xl": PAPER_MAIN[("distilbert", "unigen", None)]}  # 7.3: the others are larger LMs


def aggregate(records: Sequence[dict[str, Any]]) -> tuple[np.ndarray, np.ndarray, int]:
    """Mean and std (over seeds) of the 7 accuracies + average, in %, and the number of seeds."""
    values = np.array([[100 * r["accuracy"].get(s, np.nan) for s in SETS] + [100 * r["average"]] for r in records])
    std = values.std(axis=0, ddof=1) if len(values) > 1 else np.full(values.shape[1], np.nan)
    return values.mean(axis=0), std, len(values)


def _cell(ours: float, paper: float | None, std: float = float("nan")) -> str:
    """"ours", "ours±std" when std is known, then " (paper)" when the paper has a number."""
    text = f"{ours:.1f}" if np.isnan(std) else f"{ours:.1f}±{std:.1f}"
    return text if paper is None else f"{text} ({paper:.1f})"


def _cells(mean: np.ndarray, std: np.ndarray, paper: tuple[float, ...] | None) -> list[str]:
    return [_cell(m, None if paper is None else paper[i], std[i]) for i, m in enumerate(mean)]


def render_rows(title: str, rows: Sequence[tuple[str, Sequence[dict[str, Any]], tuple[float, ...] | None]]) -> str:
    """A markdown table; each cell "ours (paper)", ours as mean±std over seeds; column n = seeds."""
    lines = [f"### {title}", "", "| row | seeds | " + " | ".join(HEADER) + " |", "|---|---|" + "---|" * len(HEADER)]
    for name, recs, paper in rows:
        if not recs:
            continue
        mean, std, n = aggregate(recs)
        lines.append(f"| {name} | {n} | " + " | ".join(_cells(mean, std, paper)) + " |")
    return "\n".join(lines)


def render_paired(title: str, reference: Sequence[dict[str, Any]],
                  rows: Sequence[tuple[str, Sequence[dict[str, Any]], float | None]]) -> str:
    """Seven-set average of each row minus the reference's, paired by seed (same seed: same test rows, and for
    an ablation the same generation), with the paper's difference in the last column."""
    ref = {r["seed"]: 100 * r["average"] for r in reference}
    lines = [f"### {title}", "", "| row | seeds | difference per seed | mean ± std | paper |", "|---|---|---|---|---|"]
    for name, recs, paper in rows:
        diffs = {r["seed"]: 100 * r["average"] - ref[r["seed"]] for r in recs if r["seed"] in ref}
        if not diffs:
            continue
        values = np.array(list(diffs.values()))
        spread = f" ± {values.std(ddof=1):.1f}" if len(values) > 1 else ""
        per_seed = ", ".join(f"{d:+.1f} (seed {seed})" for seed, d in sorted(diffs.items()))
        lines.append(f"| {name} | {len(values)} | {per_seed} | {values.mean():+.1f}{spread} | "
                     f"{'-' if paper is None else f'{paper:+.1f}'} |")
    return "\n".join(lines)


def group_records(records: Sequence[dict[str, Any]]) -> dict[tuple, list[dict[str, Any]]]:
    """Records keyed by everything but the seed."""
    out: dict[tuple, list[dict[str, Any]]] = defaultdict(list)
    for r in records:
        key = (r["group"], r["label"], r["method"], r["domain"], tuple(r["ablations"]), r["tam"], r["generator"],
               tuple(r["settings"]))
        out[key].append(r)
    return out


def _select(records: Sequence[dict[str, Any]], **match: Any) -> list[dict[str, Any]]:
    return [r for r in records if all(r.get(k) == v for k, v in match.items())]


def _prompting_rows(baselines: dict[str, Any]) -> list[tuple[str, list[dict[str, Any]], tuple | None]]:
    rows = []
    for name, res in baselines.items():
        if name.startswith("Prompting") and "average" in res:
            rec = {"accuracy": {s: res[s]["accuracy"] for s in SETS}, "average": res["average"]}
            rows.append((f"{name} (n={res[SETS[0]]['n']}/set)", [rec], PAPER_PROMPTING))
    return rows


def render_main(records: Sequence[dict[str, Any]], baselines: dict[str, Any], tam: str) -> str:
    slot = PAPER_SLOT.get(tam)
    main = _select(records, group="main", tam=tam)
    rows = _prompting_rows(baselines) if baselines else []
    for method, domain in BASELINES:
        rows.append((f"{method} / {domain}", _select(main, method=method, domain=domain),
                     PAPER_MAIN.get((slot, method, domain)) if slot else None))
    rows.append(("**UniGen**", _select(main, method="unigen"), PAPER_MAIN.get((slot, "unigen", None)) if slot else None))
    paper_name = {"distilbert": "DistilBERT", "roberta": "RoBERTa-base"}.get(slot or "", "none published")
    return render_rows(f"Main table, task model {tam} (paper's numbers in brackets: {paper_name}; "
                       "Prompting rows: paper GPT2-XL)", rows)


def _set_means(records: Sequence[dict[str, Any]], sets: Sequence[str]) -> tuple[float, float]:
    """Mean and std over seeds of each record's plain mean over ``sets``, in %."""
    per_seed = [100 * float(np.mean([r["accuracy"][s] for s in sets])) for r in records]
    return float(np.mean(per_seed)), float(np.std(per_seed, ddof=1)) if len(per_seed) > 1 else float("nan")


def _paper_set_mean(row: tuple[float, ...] | None, sets: Sequence[str]) -> float | None:
    return None if row is None else float(np.mean([row[SETS.index(s)] for s in sets]))


def render_cross_domain(records: Sequence[dict[str, Any]], tam: str) -> str:
    """The paper's central claim per domain baseline: its accuracy inside and outside its own domain, and
    UniGen's on the same outside sets (plain mean over sets; UniGen as mean±std over its seeds)."""
    slot = PAPER_SLOT.get(tam)
    main = _select(records, group="main", tam=tam)
    unigen = _select(main, method="unigen")
    if not unigen:
        return ""
    lines = [f"### Inside vs outside the training domain, task model {tam} (paper's numbers in brackets)", "",
             "| row | in-domain sets | baseline in-domain | baseline out-of-domain | UniGen out-of-domain | "
             "UniGen − baseline, out-of-domain |", "|---|---|---|---|---|---|"]
    paper_uni = PAPER_MAIN.get((slot, "unigen", None)) if slot else None
    for method, domain in BASELINES:
        recs = _select(main, method=method, domain=domain)
        if not recs:
            continue
        inside = [s for s in SETS if SET_DOMAIN[s] == domain]
        outside = [s for s in SETS if s not in inside]
        base_in, base_out = _set_means(recs, inside)[0], _set_means(recs, outside)[0]
        uni_out, uni_std = _set_means(unigen, outside)
        paper_base = PAPER_MAIN.get((slot, method, domain)) if slot else None
        p_in, p_out = _paper_set_mean(paper_base, inside), _paper_set_mean(paper_base, outside)
        p_uni = _paper_set_mean(paper_uni, outside)
        p_gap = None if p_uni is None or p_out is None else p_uni - p_out
        lines.append(f"| {method} / {domain} | {', '.join(inside)} | {_cell(base_in, p_in)} | "
                     f"{_cell(base_out, p_out)} | {_cell(uni_out, p_uni, uni_std)} | "
                     f"{_cell(uni_out - base_out, p_gap)} |")
    return "\n".join(lines) if len(lines) > 4 else ""


def _row_name(rec: dict[str, Any]) -> str:
    """A cell's label, or what tells it apart: method, domain, ablations, generator, settings, task model."""
    if rec["label"]:
        return f"{rec['label']} ({rec['tam']})"
    parts = [rec["method"], rec["domain"], *rec["ablations"], rec["generator"], *rec["settings"], rec["tam"]]
    return ", ".join(str(p) for p in parts if p)


def render_summary(records: Sequence[dict[str, Any]], baselines: dict[str, Any]) -> str:
    """One line per main-table row: the seven-set average per task model (mean±std over seeds) and the paper's
    DistilBERT and RoBERTa averages."""
    main = _select(records, group="main")
    tams = list(dict.fromkeys(r["tam"] for r in main))
    if not tams:
        return ""
    lines = ["### Seven-set average accuracy per task model (main table)", "",
             "| row | prompted LM | " + " | ".join(tams) + " | paper DistilBERT | paper RoBERTa |",
             "|---|---|" + "---|" * (len(tams) + 2)]
    for name, rec, _ in _prompting_rows(baselines):
        lines.append(f"| {name} | {100 * rec[0]['average']:.1f} | " + " | ".join("-" for _ in tams)
                     + f" | {PAPER_PROMPTING[-1]:.1f} (GPT2-XL) | {PAPER_PROMPTING[-1]:.1f} (GPT2-XL) |")
    for method, domain in [*BASELINES, ("unigen", None)]:
        cells = []
        for tam in tams:
            recs = _select(main, method=method, domain=domain, tam=tam)
            if recs:
                mean, std, n = aggregate(recs)
                cells.append(_cell(mean[-1], None, std[-1]) + ("" if n == 1 else f" ({n} seeds)"))
            else:
                cells.append("-")
        paper = [PAPER_MAIN.get((slot, method, domain)) for slot in ("distilbert", "roberta")]
        name = "**UniGen**" if method == "unigen" else f"{method} / {domain}"
        lines.append(f"| {name} | - | " + " | ".join(cells) + " | "
                     + " | ".join(f"{p[-1]:.1f}" if p else "-" for p in paper) + " |")
    return "\n".join(lines)


def render_report(records: Sequence[dict[str, Any]], baselines: dict[str, Any]) -> str:
    """Every table of the experiment, each cell "ours (paper)"."""
    parts = [render_summary(records, baselines)]
    for tam in dict.fromkeys(r["tam"] for r in _select(records, group="main")):
        parts.append(render_main(records, baselines, tam))
        parts.append(render_cross_domain(records, tam))
    ablation = _select(records, group="ablation")
    if ablation:
        reference = _select(records, group="main", method="unigen", tam="minilm-l6")
        rows = [("UniGen", reference, PAPER_ABLATIONS[""])]
        for name, paper in PAPER_ABLATIONS.items():
            if name:
                rows.append((f"w/ {name}", [r for r in ablation if r["ablations"] == [name]], paper))
        parts.append(render_rows("Ablations, task model minilm-l6 (paper: DistilBERT)", rows))
        paired = [(name, recs, None if paper is None else paper[-1] - PAPER_ABLATIONS[""][-1])
                  for name, recs, paper in rows[1:]]
        parts.append(render_paired("Ablations minus UniGen, seven-set average, paired by seed (minilm-l6)",
                                   reference, paired))
    generators = _select(records, group="generator")
    if generators:
        reference = _select(records, group="main", method="unigen", tam="minilm-l6")
        rows = [(f"UniGen, {r[0]['generator']}", r, None)
                for r in group_records(reference + generators).values() if r[0]["method"] == "unigen"]
        parts.append(render_rows("Generator comparison, UniGen with minilm-l6 (paper GPT2-XL: "
                                 f"{PAPER_GENERATORS['gpt2-xl'][-1]:.2f} avg with DistilBERT)", rows))
        if reference:
            parts.append(render_paired("Generators minus SmolLM2-135M, seven-set average, paired by seed (minilm-l6)",
                                       reference, [(name, r, None) for name, r, _ in rows
                                                   if r[0]["generator"] != reference[0]["generator"]]))
    relabel = _select(records, group="zerogen-relabel")
    if relabel:
        rows = []
        for mode, paper in PAPER_ZEROGEN_RELABEL.items():
            recs = [r for r in relabel if f"relabel.mode={mode}" in r["settings"]]
            rows.append((f"ZeroGen movie, relabel {mode}", recs, paper))
        parts.append(render_rows("Pseudo-relabeling applied to ZeroGen (movie), minilm-l6 (paper: DistilBERT)", rows))
    known = {"main", "ablation", "generator", "zerogen-relabel"}
    for group in dict.fromkeys(r["group"] for r in records if r["group"] not in known):
        rows = [(_row_name(recs[0]), recs, None) for recs in group_records(_select(records, group=group)).values()]
        parts.append(render_rows(f"Extra: {group}", rows))
    return "\n\n".join(p for p in parts if p) + "\n\nCells: our accuracy % (mean±std over seeds when seeds > 1) with the paper's in brackets.\n"
