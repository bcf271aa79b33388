"""Data cards (``datacard.md``) of the generation and relabel stages, and the streaming statistics behind
them.

Everything is computed in one pass with bounded memory except the duplicate counter, which keeps an
8-byte digest per distinct text (:class:`unigen.synth.generation.KeySet`, ~8 MB per million rows):

* length statistics in words (mean, min, 5/50/95th percentile, max) from a histogram;
* distinct-1 / distinct-2 (unique n-grams / all n-grams, lower-cased words) on a seeded reservoir
  sample of at most ``max_texts`` texts (exact below that size; distinct-n falls with corpus size,
  so the sample size is reported with it);
* duplicate rate = 1 - distinct texts / texts;
* ``k`` random examples per label (seeded reservoir sampling).
"""

from __future__ import annotations

import json
import random
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from unigen.config import UniGenConfig
from unigen.files import atomic_write_text
from unigen.seeds import derive_seed
from unigen.stages import Stage
from unigen.synth.generation import KeySet, text_key


class TextStats:
    """Streaming text statistics (see the module docstring)."""

    def __init__(self, max_texts: int = 20_000, seed: int = 0):
        self.n = 0
        self.lengths: Counter[int] = Counter()
        self.keys = KeySet()
        self.max_texts = max_texts
        self.sample: list[str] = []
        self._rng = random.Random(seed)

    def add(self, text: str) -> None:
        self.n += 1
        self.lengths[len(text.split())] += 1
        self.keys.add(text_key(text))
        if len(self.sample) < self.max_texts:
            self.sample.append(text)
        else:
            j = self._rng.randrange(self.n)
            if j < self.max_texts:
                self.sample[j] = text

    def percentile(self, q: float) -> int:
        """Smallest length with at least ``q`` of the texts at or below it."""
        target, seen = q * self.n, 0
        for length in sorted(self.lengths):
            seen += self.lengths[length]
            if seen >= target:
                return length
        return 0

    def distinct(self, n: int) -> float:
        grams: Counter[tuple[str, ...]] = Counter()
        for text in self.sample:
            words = text.lower().split()
            grams.update(tuple(words[i: i + n]) for i in range(len(words) - n + 1))
        total = sum(grams.values())
        return len(grams) / total if total else 0.0

    def summary(self) -> dict[str, Any]:
        if not self.n:
            return {"n": 0}
        mean = sum(k * v for k, v in self.lengths.items()) / self.n
        return {"n": self.n, "words_mean": round(mean, 2), "words_min": min(self.lengths),
                "words_p5": self.percentile(0.05), "words_median": self.percentile(0.5),
                "words_p95": self.percentile(0.95), "words_max": max(self.lengths),
                "distinct_1": round(self.distinct(1), 4), "distinct_2": round(self.distinct(2), 4),
                "distinct_on": len(self.sample), "duplicate_rate": round(1 - len(self.keys) / self.n, 4)}


class Examples:
    """``k`` seeded random rows per label (reservoir sampling)."""

    def __init__(self, k: int = 10, seed: int = 0):
        self.k = k
        self.rows: dict[int, list[dict[str, Any]]] = {}
        self.seen: Counter[int] = Counter()
        self._rng = random.Random(seed)

    def add(self, label: int, row: Mapping[str, Any]) -> None:
        self.seen[label] += 1
        bucket = self.rows.setdefault(label, [])
        if len(bucket) < self.k:
            bucket.append(dict(row))
        else:
            j = self._rng.randrange(self.seen[label])
            if j < self.k:
                bucket[j] = dict(row)


# ---------------------------------------------------------------- markdown

def md_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    def cell(v: Any) -> str:
        return str(v).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(map(cell, header)) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(map(cell, r)) + " |" for r in rows]
    return "\n".join(lines)


def stats_table(named: Mapping[str, Mapping[str, Any]]) -> str:
    """One row per named :meth:`TextStats.summary`."""
    cols = ["n", "words_mean", "words_min", "words_p5", "words_median", "words_p95", "words_max",
            "distinct_1", "distinct_2", "distinct_on", "duplicate_rate"]
    return md_table(["rows", *cols], [[name, *(s.get(c, "") for c in cols)] for name, s in named.items()])


def pct(num: float, den: float) -> str:
    return f"{100.0 * num / den:.1f}%" if den else "n/a"


# ---------------------------------------------------------------- the generation stage's card

def summarise(stage: Stage, indices: list[int], labels: tuple[str, ...]) -> dict[str, Any]:
    """Counts per label / domain, rejection reasons, stop reasons and text statistics (one pass)."""
    per_label: Counter[int] = Counter()
    attempts: Counter[int] = Counter()
    rejected: Counter[str] = Counter()
    stops: Counter[str] = Counter()
    domains: Counter[str] = Counter()
    by_length: dict[str, TextStats] = {}
    tokens, seconds = 0, 0.0
    for i in indices:
        st = stage.read_stats(i)
        attempts[st["label"]] += st["attempts"]
        rejected.update(st["rejected"])
        stops.update(st["stops"])
        tokens += st["tokens_sampled"]
        seconds += st["seconds"]
    text = TextStats()
    for row in stage.iter_rows(indices):
        per_label[row["prompt_label"]] += 1
        domains[row["domain"]] += 1
        text.add(row["text"])
        if "length" in row:  # generate.lengths: statistics per length class
            by_length.setdefault(row["length"], TextStats()).add(row["text"])
    rows = sum(per_label.values())
    att = sum(attempts.values())
    totals = {"rows": rows, "attempts": att, "acceptance": round(rows / att, 4) if att else None,
              "per_label": {labels[k]: per_label[k] for k in sorted(per_label)},
              "rejected": dict(rejected), "stops": dict(stops), "tokens_sampled": tokens,
              "shard_seconds": round(seconds, 2),
              "samples_per_s": round(rows / seconds, 3) if seconds else None}
    if by_length:
        totals["per_length"] = {name: st.n for name, st in by_length.items()}
    return {"totals": totals, "attempts": attempts, "domains": domains, "text": text.summary(),
            "lengths": {name: st.summary() for name, st in by_length.items()}}


def _budget(g: Any) -> str:
    """The new-token budget of the card's header: one number, or each length class's share and budget."""
    variants = g.length_variants()
    if not variants:
        return f"at most {g.max_new_tokens} new tokens"
    return "length classes " + ", ".join(
        f"`{v.length.name}` ({100 * v.share:.0f}%, at most {v.max_new_tokens} new tokens)" for v in variants)


def _guidance(g: Any) -> str:
    """The card's note on ``generate.guidance`` (nothing when it is off)."""
    if not g.guidance:
        return ""
    return (f", guidance {g.guidance} (each token sampled from p(x|label)^{1 + g.guidance:g} / "
            f"p(x|other labels)^{g.guidance:g}, the other labels' prompts as contrast)")


def write_generation_card(stage: Stage, cfg: UniGenConfig, counts: dict[str, Any]) -> None:
    t, g = counts["totals"], cfg.generate
    label_rows = [
        [
            lab,
            t["per_label"].get(lab, 0),
            counts["attempts"].get(k, 0),
            pct(t["per_label"].get(lab, 0), counts["attempts"].get(k, 0)),
        ]
        for k, lab in enumerate(cfg.labels)
    ]
    lines = [
        f"# Generated data `{stage.path.name}`", "",
        f"Generator `{cfg.generator}`, prompt set `{g.prompt_set}`, seed {cfg.seed}; top-k {g.top_k}, "
        f"top-p {g.top_p}, temperature {g.temperature}, {_budget(g)}, "
        f"{g.precision}, de-duplication {'on' if g.dedup else 'off'}"
        f"{f', at least {g.min_words} words' if g.min_words else ''}"
        f"{_guidance(g)}.", "",
        md_table(["label", "rows", "attempts", "acceptance"], label_rows), "",
        f"Rejected: {t['rejected'] or 'none'}. Ended by: {t['stops']} (`none` = no closing quote or "
        f"newline within the token budget; kept, as in the paper). Domains: {dict(counts['domains'])}.", "",
        stats_table({"generated": counts["text"], **{f"`{k}`": v for k, v in counts["lengths"].items()}}),
        "",
        f"Throughput: {t['samples_per_s']} accepted samples/s over {t['shard_seconds']} s of shard time, "
        f"{t['tokens_sampled']} tokens sampled.", "",
    ]
    atomic_write_text(stage.path / "datacard.md", "\n".join(lines))


class Acceptance:
    """Running accepted/attempted counts shown as the progress bar's postfix."""

    def __init__(self, bar: Any):
        self.bar, self.accepted, self.attempts = bar, 0, 0

    def __call__(self, accepted: int, attempts: int) -> None:
        self.accepted += accepted
        self.attempts += attempts
        self.bar.update(accepted)
        self.bar.set_postfix(acceptance=pct(self.accepted, self.attempts), refresh=False)


# ---------------------------------------------------------------- the relabel stage's card
# The relabel stage's data card (``datacard.md``), computed in one streaming pass over its shards.
#
# Contents: counts per label before filtering (by prompt label) and after (kept, by training label),
# acceptance rates, the scoring rule with the agreement of each rule with the prompt labels, length
# statistics, distinct-1/2 and duplicate rates of the generated and the kept texts, and ten random kept
# examples per label with their soft labels (like the paper's examples table).
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
        lines.append(
            f"Scores centred: each label's mean score on the rule sample ({offsets}, in label order) is "
            "subtracted."
        )
    if choice.get("agreement"):
        agree = ", ".join(f"{r} {100 * a:.1f}%" for r, a in choice["agreement"].items())
        lines.append(f"Agreement of each rule's argmax with the prompt label on the {choice['sample_size']} "
                     f"texts of the rule sample: {agree}.")
    if rule != "none" and counts.get("agreement_all") is not None:
        lines.append(f"Agreement of the relabel argmax with the prompt label on all {counts['rows']} texts: "
                     f"{100 * counts['agreement_all']:.1f}%.")
    return lines + _labeling_lines(manifest, counts)


def _labeling_lines(manifest: dict[str, Any], counts: dict[str, Any]) -> list[str]:
    """The labeler ensemble and the verbalizer prompt variants, when the stage used them."""
    lines = []
    ensemble = manifest.get("labelers")
    if ensemble:
        members = ", ".join(f"`{n}` (weight {w:g})" for n, w in zip(ensemble["names"], ensemble["weights"]))
        lines.append(f"Labelers: {members}, combined by `{ensemble['combine']}` (docs/method.md §4.4).")
        agree = counts.get("labeler_agreement") or {}
        if agree:
            lines.append("Agreement of each labeler's argmin with the prompt label on all texts: "
                         + ", ".join(f"`{n}` {100 * a:.1f}%" for n, a in agree.items()) + ".")
    variants = manifest.get("verbalizer_variants")
    if variants:
        prompts = "; ".join(json.dumps(p) for p in variants["prompts"])
        words = "; ".join(" / ".join(ws) for ws in variants["label_words"])
        lines.append(f"Verbalizer scores averaged per LM over {len(variants['prompts'])} prompts ({prompts}) "
                     f"and {len(variants['label_words'])} label-word sets ({words}).")
    return lines


def _kept(name: str, generated: int, kept: int) -> str:
    return f"`{name}` {kept} of {generated} ({pct(kept, generated)})"


def _balance_lines(balance: dict[str, Any] | None) -> list[str]:
    """The balance check (:mod:`unigen.synth.balance`): what the filter did with each prompt label's texts."""
    if not balance:
        return []
    rows = [[lab, b["generated"], b["agree"], f"{b['flipped']} ({pct(b['flipped'], b['generated'])})",
             f"{b['kept']} ({pct(b['kept'], b['generated'])})", pct(balance["kept_pool"][lab] or 0, 1)]
            for lab, b in balance["per_prompt_label"].items()]
    judged = ", ".join(f"{lab} {pct(share or 0, 1)}" for lab, share in balance["judged"].items())
    ratio = balance["imbalance"]
    verdict = (f"balanced (largest / smallest kept label {ratio})" if balance["balanced"] else
               f"**unbalanced** (largest / smallest kept label {ratio or 'inf'}): the LM "
               "writes or judges most texts as one label; `relabel.until_kept` generates until every label "
               "has its quota of kept rows")
    return ["## Balance", "",
            md_table(["prompt label", "generated", "argmax = prompt label", "flipped (argmax another label)",
                      "kept", "share of the kept pool"], rows), "",
            f"The relabel argmax over all generated texts: {judged}. Kept pool: {verdict}.", ""]


def write_relabel_card(stage: Stage, gen: Stage, cfg: UniGenConfig) -> str:
    """Write ``datacard.md`` into the relabel stage folder and return its text."""
    labels = cfg.labels
    before: Counter[int] = Counter()
    after: Counter[int] = Counter()
    flipped = 0
    lengths: Counter[str] = Counter()  # generate.lengths: rows and kept rows per length class
    kept_lengths: Counter[str] = Counter()
    conf: list[float] = []
    all_text, kept_text = TextStats(seed=cfg.seed), TextStats(seed=cfg.seed + 1)
    examples = Examples(10, seed=derive_seed(cfg.seed, "datacard"))
    for row in stage.iter_rows():
        before[row["prompt_label"]] += 1
        all_text.add(row["text"])
        if "length" in row:
            lengths[row["length"]] += 1
            kept_lengths[row["length"]] += row["keep"]
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
        f"# Relabeled synthetic data `{stage.path.name}`",
        "",
        f"Generator `{cfg.generator}`, prompt set `{g.get('prompt_set', '?')}`, seed {cfg.seed}; "
        "relabel mode "
        f"`{r.mode}`, tau_RE {r.temperature}, T_RE {r.threshold} (keep iff p(prompt label) > "
        f"{1 / len(labels) + r.threshold:.3f}{' and argmax = prompt label' if r.drop_disagreeing else ''}).",
        "",
        *_rule_lines(m, counts),
        "",
        "## Counts",
        "",
        md_table(["label", "generated (prompt label)", "kept (training label)", "acceptance"], table),
        "",
        f"Kept rows relabeled to another label: {flipped}. Mean confidence of kept rows: "
        f"{sum(conf) / len(conf):.3f}."
        if conf
        else "No row was kept.",
        "",
        f"Generation: {gen_counts.get('attempts', '?')} sampled, {gen_counts.get('rows', '?')} accepted "
        f"(acceptance {gen_counts.get('acceptance', '?')}); rejected {gen_counts.get('rejected', {})}.",
        *([f"Targets met (until_kept): {m['targets_met']}."] if "targets_met" in m else []),
        *([f"Kept per length class: {', '.join(_kept(n, lengths[n], kept_lengths[n]) for n in lengths)}."]
          if lengths else []),
        "",
        *_balance_lines(counts.get("balance")),
        "## Texts",
        "",
        stats_table({"generated": all_text.summary(), "kept": kept_text.summary()}),
        "",
        "Lengths in whitespace words; distinct-n = unique n-grams / n-grams on `distinct_on` texts; "
        "duplicate rate among the rows shown (generation-time duplicates are in 'rejected' above).",
        "",
        "## Examples (random kept rows, probabilities in label order " + ", ".join(labels) + ")",
        "",
    ]
    for k, lab in enumerate(labels):
        rows = examples.rows.get(k, [])
        lines += [
            f"### {lab}",
            "",
            md_table(
                ["text", "prompt label", "soft label"],
                [[x["text"], labels[x["prompt_label"]], _probs(x)] for x in rows],
            ),
            "",
        ]
    text = "\n".join(lines)
    atomic_write_text(stage.path / "datacard.md", text)
    return text
