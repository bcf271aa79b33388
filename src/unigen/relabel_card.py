"""The relabel stage's data card (``datacard.md``), computed in one streaming pass over its shards.

Contents: counts per label before filtering (by prompt label) and after (kept, by training label),
acceptance rates, the scoring rule with the agreement of each rule with the prompt labels, length
statistics, distinct-1/2 and duplicate rates of the generated and the kept texts, and ten random kept
examples per label with their soft labels (like the paper's examples table).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from unigen.artifacts import Stage, derive_seed
from unigen.config import UniGenConfig
from unigen.datacard import Examples, TextStats, md_table, pct, stats_table


def _probs(row: dict[str, Any]) -> str:
    return "[" + ", ".join(f"{p:.2f}" for p in row["probs"]) + "]"


def _rule_lines(manifest: dict[str, Any], counts: dict[str, Any]) -> list[str]:
    choice = manifest.get("rule_choice") or {"rule": manifest.get("rule")}
    rule = choice.get("rule")
    centred = " centred" if choice.get("centred") else ""
    lines = [f"Scoring rule: **{rule}{centred}**"
             + (" (chosen automatically)." if choice.get("how") == "auto" else " (set in the config).")]
    if centred:
        offsets = ", ".join(f"{o:.4f}" for o in choice["offset"])
        lines.append(f"Scores centred: each label's mean score on the rule sample ({offsets}, in label order) is subtracted.")
    if choice.get("agreement"):
        agree = ", ".join(f"{r} {100 * a:.1f}%" for r, a in choice["agreement"].items())
        lines.append(f"Agreement of each rule's argmax with the prompt label on the {choice['sample_size']} "
                     f"texts of the rule sample: {agree}.")
    if rule != "none" and counts.get("agreement_all") is not None:
        lines.append(f"Agreement of the relabel argmax with the prompt label on all {counts['rows']} texts: "
                     f"{100 * counts['agreement_all']:.1f}%.")
    return lines


def write_relabel_card(stage: Stage, gen: Stage, cfg: UniGenConfig) -> str:
    """Write ``datacard.md`` into the relabel stage folder and return its text."""
    labels = cfg.labels
    before: Counter[int] = Counter()
    after: Counter[int] = Counter()
    flipped = 0
    conf: list[float] = []
    all_text, kept_text = TextStats(seed=cfg.seed), TextStats(seed=cfg.seed + 1)
    examples = Examples(10, seed=derive_seed(cfg.seed, "datacard"))
    for row in stage.iter_rows():
        before[row["prompt_label"]] += 1
        all_text.add(row["text"])
        if row["keep"]:
            after[row["label"]] += 1
            flipped += row["label"] != row["prompt_label"]
            conf.append(row["confidence"])
            kept_text.add(row["text"])
            examples.add(row["label"], row)
    m = stage.manifest
    counts = m.get("counts", {})
    gen_counts = gen.manifest.get("counts", {})
    r, g = cfg.relabel, gen.manifest.get("config", {}).get("generate", {})
    n_before, n_after = sum(before.values()), sum(after.values())
    table = [[lab, before[k], after[k], pct(after[k], before[k])] for k, lab in enumerate(labels)]
    table.append(["all", n_before, n_after, pct(n_after, n_before)])
    lines = [
        f"# Relabeled synthetic data `{stage.path.name}`", "",
        f"Generator `{cfg.generator}`, prompt set `{g.get('prompt_set', '?')}`, seed {cfg.seed}; relabel mode "
        f"`{r.mode}`, tau_RE {r.temperature}, T_RE {r.threshold} (keep iff p(prompt label) > "
        f"{1 / len(labels) + r.threshold:.3f}{' and argmax = prompt label' if r.drop_disagreeing else ''}).", "",
        *_rule_lines(m, counts), "",
        "## Counts", "",
        md_table(["label", "generated (prompt label)", "kept (training label)", "acceptance"], table), "",
        f"Kept rows relabeled to another label: {flipped}. Mean confidence of kept rows: "
        f"{sum(conf) / len(conf):.3f}." if conf else "No row was kept.", "",
        f"Generation: {gen_counts.get('attempts', '?')} sampled, {gen_counts.get('rows', '?')} accepted "
        f"(acceptance {gen_counts.get('acceptance', '?')}); rejected {gen_counts.get('rejected', {})}.",
        *([f"Targets met (until_kept): {m['targets_met']}."] if "targets_met" in m else []), "",
        "## Texts", "",
        stats_table({"generated": all_text.summary(), "kept": kept_text.summary()}), "",
        "Lengths in whitespace words; distinct-n = unique n-grams / n-grams on `distinct_on` texts; "
        "duplicate rate among the rows shown (generation-time duplicates are in 'rejected' above).", "",
        "## Examples (random kept rows, probabilities in label order " + ", ".join(labels) + ")", "",
    ]
    for k, lab in enumerate(labels):
        rows = examples.rows.get(k, [])
        lines += [f"### {lab}", "", md_table(["text", "prompt label", "soft label"],
                                               [[x["text"], labels[x["prompt_label"]], _probs(x)] for x in rows]), ""]
    text = "\n".join(lines)
    (stage.path / "datacard.md").write_text(text)
    return text
