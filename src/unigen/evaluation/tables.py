"""Markdown tables: one run's results (:func:`format_table`) and an experiment's records in the paper's
layout with the paper's numbers beside ours (:func:`render_report`; the numbers are
:mod:`unigen.evaluation.paper`).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import numpy as np

from unigen.config.presets import GENERATION_DOMAINS
from unigen.evaluation.paper import (
    HEADER,
    PAPER_ABLATIONS,
    PAPER_GENERATORS,
    PAPER_MAIN,
    PAPER_PROMPTING,
    PAPER_SLOT,
    PAPER_ZEROGEN_RELABEL,
    SET_DOMAIN,
    SHORT_NAMES,
    TEST_SETS,
    paper_mean,
    set_dict,
)

BASELINES = [
    (method, domain) for method in ("zerogen", "sungen") for domain in GENERATION_DOMAINS
]  # main table


def aggregate(records: Sequence[dict[str, Any]]) -> tuple[np.ndarray, np.ndarray, int]:
    """Mean and std (over seeds) of the 7 accuracies + average, in %, and the number of seeds."""
    values = np.array(
        [[100 * r["accuracy"].get(s, np.nan) for s in TEST_SETS] + [100 * r["average"]] for r in records]
    )
    std = values.std(axis=0, ddof=1) if len(values) > 1 else np.full(values.shape[1], np.nan)
    return values.mean(axis=0), std, len(values)


def _cell(ours: float, paper: float | None, std: float = float("nan")) -> str:
    """"ours", "ours±std" when std is known, then " (paper)" when the paper has a number."""
    text = f"{ours:.1f}" if np.isnan(std) else f"{ours:.1f}±{std:.1f}"
    return text if paper is None else f"{text} ({paper:.1f})"


def _cells(mean: np.ndarray, std: np.ndarray, paper: tuple[float, ...] | None) -> list[str]:
    return [_cell(m, None if paper is None else paper[i], std[i]) for i, m in enumerate(mean)]


def render_rows(
    title: str, rows: Sequence[tuple[str, Sequence[dict[str, Any]], tuple[float, ...] | None]]
) -> str:
    """A markdown table; each cell "ours (paper)", ours as mean±std over seeds; column n = seeds."""
    lines = [
        f"### {title}",
        "",
        "| row | seeds | " + " | ".join(HEADER) + " |",
        "|---|---|" + "---|" * len(HEADER),
    ]
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
    lines = [
        f"### {title}",
        "",
        "| row | seeds | difference per seed | mean ± std | paper |",
        "|---|---|---|---|---|",
    ]
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
        key = (
            r["group"],
            r["label"],
            r["method"],
            r["domain"],
            tuple(r["ablations"]),
            r["tam"],
            r["generator"],
            tuple(r["settings"]),
        )
        out[key].append(r)
    return out


def _select(records: Sequence[dict[str, Any]], **match: Any) -> list[dict[str, Any]]:
    return [r for r in records if all(r.get(k) == v for k, v in match.items())]


def _prompting_rows(baselines: dict[str, Any]) -> list[tuple[str, list[dict[str, Any]], tuple | None]]:
    rows = []
    for name, res in baselines.items():
        if name.startswith("Prompting") and "average" in res:
            rec = {"accuracy": {s: res[s]["accuracy"] for s in TEST_SETS}, "average": res["average"]}
            rows.append((f"{name} (n={res[TEST_SETS[0]]['n']}/set)", [rec], PAPER_PROMPTING))
    return rows


def render_main(records: Sequence[dict[str, Any]], baselines: dict[str, Any], tam: str) -> str:
    slot = PAPER_SLOT.get(tam)
    main = _select(records, group="main", tam=tam)
    rows = _prompting_rows(baselines) if baselines else []
    for method, domain in BASELINES:
        rows.append((f"{method} / {domain}", _select(main, method=method, domain=domain),
                     PAPER_MAIN.get((slot, method, domain)) if slot else None))
    rows.append(
        (
            "**UniGen**",
            _select(main, method="unigen"),
            PAPER_MAIN.get((slot, "unigen", None)) if slot else None,
        )
    )
    paper_name = {"distilbert": "DistilBERT", "roberta": "RoBERTa-base"}.get(slot or "", "none published")
    return render_rows(f"Main table, task model {tam} (paper's numbers in brackets: {paper_name}; "
                       "Prompting rows: paper GPT2-XL)", rows)


def _set_means(records: Sequence[dict[str, Any]], sets: Sequence[str]) -> tuple[float, float]:
    """Mean and std over seeds of each record's plain mean over ``sets``, in %."""
    per_seed = [100 * float(np.mean([r["accuracy"][s] for s in sets])) for r in records]
    return float(np.mean(per_seed)), float(np.std(per_seed, ddof=1)) if len(per_seed) > 1 else float("nan")


def _paper_set_mean(row: tuple[float, ...] | None, sets: Sequence[str]) -> float | None:
    return None if row is None else float(np.mean([row[TEST_SETS.index(s)] for s in sets]))


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
        inside = [s for s in TEST_SETS if SET_DOMAIN[s] == domain]
        outside = [s for s in TEST_SETS if s not in inside]
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
            parts.append(
                render_paired(
                    "Generators minus SmolLM2-135M, seven-set average, paired by seed (minilm-l6)",
                    reference,
                    [
                        (name, r, None)
                        for name, r, _ in rows
                        if r[0]["generator"] != reference[0]["generator"]
                    ],
                )
            )
    relabel = _select(records, group="zerogen-relabel")
    if relabel:
        rows = []
        for mode, paper in PAPER_ZEROGEN_RELABEL.items():
            recs = [r for r in relabel if f"relabel.mode={mode}" in r["settings"]]
            rows.append((f"ZeroGen movie, relabel {mode}", recs, paper))
        parts.append(
            render_rows("Pseudo-relabeling applied to ZeroGen (movie), minilm-l6 (paper: DistilBERT)", rows)
        )
    known = {"main", "ablation", "generator", "zerogen-relabel"}
    for group in dict.fromkeys(r["group"] for r in records if r["group"] not in known):
        rows = [
            (_row_name(recs[0]), recs, None) for recs in group_records(_select(records, group=group)).values()
        ]
        parts.append(render_rows(f"Extra: {group}", rows))
    return (
        "\n\n".join(p for p in parts if p)
        + "\n\nCells: our accuracy % (mean±std over seeds when seeds > 1) with the paper's in brackets.\n"
    )


# ---------------------------------------------------------------- one run's results

def public_json(results: dict[str, Any]) -> dict[str, Any]:
    """The ``--output`` schema: per set accuracy, macro_f1, n; and the average."""
    out: dict[str, Any] = {k: {f: v[f] for f in ("accuracy", "macro_f1", "n")}
                           for k, v in results.items() if k != "average"}
    out["average"] = results["average"]
    return out


def format_table(rows: dict[str, dict[str, Any]], *, paper: dict[str, float] | None = None,
                 paper_row: bool = True, title: str = "") -> str:
    """Markdown table: one row per method (accuracy % / macro-F1 %), n per set, and ``paper`` (a
    :func:`~unigen.evaluation.paper.set_dict` row, the paper's Prompting row unless ``paper_row=False``)
    beside."""
    if paper is None and paper_row:
        paper = set_dict(PAPER_PROMPTING)
    sets = [s for s in TEST_SETS if any(s in r for r in rows.values())]
    sets += sorted({k for r in rows.values() for k in r if k not in sets and k != "average"})
    head = ["method"] + [SHORT_NAMES.get(s, s) for s in sets] + ["Avg"]
    lines = [f"**{title}**", ""] if title else []
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for method, res in rows.items():
        cells = [f"{100 * res[s]['accuracy']:.2f} / {100 * res[s]['macro_f1']:.2f}" if s in res else "-"
                 for s in sets]
        lines.append(f"| {method} | " + " | ".join(cells) + f" | {100 * res['average']:.2f} |")
    paper_avg = paper_mean(paper, sets) if paper else None
    if paper:
        cells = [f"{paper[s]:.2f}" if s in paper else "-" for s in sets]
        avg = "-" if paper_avg is None else f"{paper_avg:.2f}"
        lines.append("| paper: Prompting GPT2-XL (acc.) | " + " | ".join(cells) + f" | {avg} |")
    n_rows = {method: [_n_cell(res.get(s)) for s in sets] for method, res in rows.items()}
    if len({tuple(v) for v in n_rows.values()}) == 1:
        n_rows = {"": next(iter(n_rows.values()))}
    for method, cells in n_rows.items():
        lines.append(f"| n{' (' + method + ')' if method else ''} | " + " | ".join(cells) + " | |")
    lines.append("")
    lines.append("Cells: accuracy / macro-F1 (%). Avg: plain mean of the accuracies.")
    if paper and len(sets) != len(TEST_SETS):
        if paper_avg is None:
            lines.append("The paper has no number for some of these sets, so its row has no Avg here.")
        else:
            lines.append(f"The paper's Avg is its mean over the same {len(sets)} set(s), like ours (over all "
                         f"seven it is {paper['average']:.2f}).")
    if any("subsampled_from" in v for r in rows.values() for v in r.values() if isinstance(v, dict)):
        lines.append("Sets marked n/N are fixed seeded subsamples of n rows out of N (--limit).")
    return "\n".join(lines)


def _n_cell(res: dict[str, Any] | None) -> str:
    if not res:
        return "-"
    return f"{res['n']}/{res['subsampled_from']}" if "subsampled_from" in res else str(res["n"])

