"""The balance check of the relabel stage: how the relabel filter treats each prompt label's texts.

A small LM asked for negative text often writes positive text (SmolLM2-135M's texts are mostly positive,
results/quality.md). The relabel filter then flips or drops much of the negative prompt's output and the
kept pool, which the task model trains on, leans to one label. :func:`prompt_balance` counts, per prompt
label, the generated texts, the ones whose relabel argmax is the prompt label, the *flipped* ones (argmax
another label: dropped with ``relabel.drop_disagreeing``, else kept under the other label) and the kept
ones, plus the split of the kept pool over the training labels and of all texts over the LM's argmax.

The kept pool is called unbalanced when its largest label holds more than :data:`IMBALANCE_LIMIT` times
the rows of its smallest (or a label has no kept row). The relabel stage writes the summary into its
manifest (``counts.balance``) and its data card (:mod:`unigen.synth.datacards`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

#: largest / smallest kept label count above which the kept pool is reported unbalanced
IMBALANCE_LIMIT = 1.5


def _share(num: int, den: int) -> float | None:
    return round(num / den, 4) if den else None


class BalanceCounter:
    """Streaming counts behind :func:`prompt_balance` (one :meth:`add` per relabeled row)."""

    def __init__(self, n_labels: int):
        self.generated = [0] * n_labels  # by prompt label
        self.kept = [0] * n_labels  # by prompt label
        self.judged = [[0] * n_labels for _ in range(n_labels)]  # [prompt label][relabel argmax]
        self.pool = [0] * n_labels  # kept rows by training label

    def add(self, row: Mapping[str, Any]) -> None:
        """Count one relabeled row (``prompt_label``, ``label`` = relabel argmax, ``keep``)."""
        y, h = int(row["prompt_label"]), int(row["label"])
        self.generated[y] += 1
        self.judged[y][h] += 1
        if row["keep"]:
            self.kept[y] += 1
            self.pool[h] += 1

    def summary(self, labels: Sequence[str]) -> dict[str, Any]:
        """Per prompt label ``generated``, ``agree``, ``flipped``, ``kept`` and their shares; ``kept_pool``
        (share of the kept rows per training label), ``judged`` (share of all rows per relabel argmax),
        ``imbalance`` (largest / smallest kept label, None when one has none) and ``balanced``."""
        per_label = {}
        for y, lab in enumerate(labels):
            n, agree = self.generated[y], self.judged[y][y]
            per_label[lab] = {"generated": n, "agree": agree, "flipped": n - agree, "kept": self.kept[y],
                              "flipped_share": _share(n - agree, n), "kept_share": _share(self.kept[y], n)}
        total, kept = sum(self.generated), sum(self.pool)
        judged = [sum(row[h] for row in self.judged) for h in range(len(labels))]
        imbalance = round(max(self.pool) / min(self.pool), 3) if kept and min(self.pool) else None
        return {"per_prompt_label": per_label,
                "kept_pool": {lab: _share(self.pool[k], kept) for k, lab in enumerate(labels)},
                "judged": {lab: _share(judged[k], total) for k, lab in enumerate(labels)},
                "imbalance": imbalance,
                "balanced": imbalance is not None and imbalance <= IMBALANCE_LIMIT}


def prompt_balance(rows: Iterable[Mapping[str, Any]], labels: Sequence[str]) -> dict[str, Any]:
    """The balance summary (:meth:`BalanceCounter.summary`) of relabeled rows."""
    counter = BalanceCounter(len(labels))
    for row in rows:
        counter.add(row)
    return counter.summary(labels)
