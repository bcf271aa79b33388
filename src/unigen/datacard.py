"""Data cards: streaming statistics of generated / relabeled rows and their markdown rendering.

Everything is computed in one pass with bounded memory except the duplicate counter, which keeps an
8-byte digest per distinct text (:class:`unigen.generate_core.KeySet`, ~8 MB per million rows):

* length statistics in words (mean, min, 5/50/95th percentile, max) from a histogram;
* distinct-1 / distinct-2 (unique n-grams / all n-grams, lower-cased words) on a seeded reservoir
  sample of at most ``max_texts`` texts (exact below that size; distinct-n falls with corpus size,
  so the sample size is reported with it);
* duplicate rate = 1 - distinct texts / texts;
* ``k`` random examples per label (seeded reservoir sampling).
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from unigen.generate_core import KeySet, text_key


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
