"""Evaluation on the real test sets: accuracy, macro-F1, n per set and the plain mean of accuracies.

A *classifier* is anything with ``predict_ids(texts) -> (N,) int array``. :func:`load_classifier`
turns a model spec into one: ``vader``, ``prompt:<lm name or path>`` (the Prompting baseline, scored
with :class:`unigen.lm.LMScorer`), or a trained task-model folder.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from unigen.config import UniGenConfig
from unigen.data import TEST_SETS, Dataset, load_dataset, parse_dataset_names

#: The paper's Prompting row (GPT2-XL 1.5B), accuracy %, method-spec section 7.1.
PAPER_PROMPTING = {"sst2": 82.15, "imdb": 70.26, "rotten_tomatoes": 77.56, "amazon": 79.06,
                   "yelp": 78.04, "cr": 80.30, "tweet": 80.38, "average": 78.25}
SHORT_NAMES = {"sst2": "SST-2", "imdb": "IMDB", "rotten_tomatoes": "Rotten", "amazon": "Amazon",
               "yelp": "Yelp", "cr": "CR", "tweet": "Tweet"}


class Classifier(Protocol):
    name: str

    def predict_ids(self, texts: Sequence[str]) -> np.ndarray: ...


# ---------------------------------------------------------------- metrics

def accuracy(y_true: Sequence[int], y_pred: Sequence[int]) -> float:
    t, p = np.asarray(y_true), np.asarray(y_pred)
    return float((t == p).mean()) if len(t) else float("nan")


def macro_f1(y_true: Sequence[int], y_pred: Sequence[int], num_classes: int = 2) -> float:
    """Unweighted mean over classes of F1_c = 2 TP_c / (2 TP_c + FP_c + FN_c) (0 when undefined)."""
    t, p = np.asarray(y_true), np.asarray(y_pred)
    scores = []
    for c in range(num_classes):
        tp = int(((p == c) & (t == c)).sum())
        denom = 2 * tp + int(((p == c) & (t != c)).sum()) + int(((p != c) & (t == c)).sum())
        scores.append(2 * tp / denom if denom else 0.0)
    return float(np.mean(scores))


# ---------------------------------------------------------------- classifiers

def _vader_labels(texts: Sequence[str]) -> list[int]:
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    analyzer = SentimentIntensityAnalyzer()
    return [int(analyzer.polarity_scores(t)["compound"] >= 0) for t in texts]


class VaderClassifier:
    """VADER lexicon baseline: positive iff the compound score is >= 0 (binary labels only)."""

    name = "vader"

    def __init__(self, workers: int | None = None):
        self.workers = workers or min(2, os.cpu_count() or 1)

    def predict_ids(self, texts: Sequence[str]) -> np.ndarray:
        texts = list(texts)
        if self.workers < 2 or len(texts) < 5000:
            return np.asarray(_vader_labels(texts))
        chunks = [texts[i::self.workers] for i in range(self.workers)]
        with ProcessPoolExecutor(self.workers) as pool:
            parts = list(pool.map(_vader_labels, chunks))
        out = np.empty(len(texts), dtype=int)
        for i, part in enumerate(parts):
            out[i::self.workers] = part
        return out


class PromptClassifier:
    """The Prompting baseline: the LM itself, predicting argmin of its label scores."""

    def __init__(self, scorer: Any, name: str, progress: bool = True):
        self.scorer, self.name, self.progress = scorer, name, progress

    def predict_ids(self, texts: Sequence[str]) -> np.ndarray:
        return self.scorer.scores(texts, progress=self.progress).argmin(axis=1)


class TaskModelClassifier:
    def __init__(self, model: Any, name: str):
        self.model, self.name = model, name

    def predict_ids(self, texts: Sequence[str]) -> np.ndarray:
        return np.asarray(self.model.predict_proba(list(texts))).argmax(axis=1)


def load_classifier(spec: str, cfg: UniGenConfig, progress: bool = True) -> Classifier:
    """``vader`` | ``prompt:<lm>`` | a task-model folder."""
    if spec == "vader":
        return VaderClassifier()
    if spec.startswith("prompt:"):
        from unigen.lm import LMScorer

        lm_name = spec.split(":", 1)[1] or cfg.generator
        scorer = LMScorer.from_name(lm_name, cfg.labels, cfg.scoring, device=cfg.device)
        return PromptClassifier(scorer, f"prompt:{lm_name} ({cfg.scoring.rule})", progress)
    if Path(spec).is_dir():
        from unigen.tam import TaskModel

        return TaskModelClassifier(TaskModel.from_pretrained(spec), spec)
    from unigen.registry import ModelNotAvailable

    raise ModelNotAvailable(f"unknown model '{spec}': use vader, prompt:<lm name or path>, or a trained model folder")


# ---------------------------------------------------------------- evaluation

def evaluate_classifier(classifier: Classifier, datasets: Sequence[Dataset]) -> dict[str, Any]:
    """``{dataset: {"accuracy", "macro_f1", "n"}, ..., "average": mean accuracy}`` (fractions)."""
    results: dict[str, Any] = {}
    for ds in datasets:
        start = time.perf_counter()
        pred = classifier.predict_ids(ds.texts)
        results[ds.name] = {"accuracy": accuracy(ds.labels, pred), "macro_f1": macro_f1(ds.labels, pred),
                            "n": len(ds), "seconds": round(time.perf_counter() - start, 2)}
        if ds.subsampled_from is not None:
            results[ds.name]["subsampled_from"] = ds.subsampled_from
    accs = [r["accuracy"] for r in results.values()]
    results["average"] = float(np.mean(accs)) if accs else float("nan")
    return results


def subsample_seed(cfg: UniGenConfig) -> int:
    """The seed of the ``evaluate.limit`` subsample: ``evaluate.sample_seed``, else the run's seed."""
    return cfg.seed if cfg.evaluate.sample_seed is None else cfg.evaluate.sample_seed


def load_eval_sets(names: str, cfg: UniGenConfig, limit: int | None = None) -> list[Dataset]:
    return [load_dataset(n, data_dir=cfg.evaluate.data_dir, limit=limit, seed=subsample_seed(cfg))
            for n in parse_dataset_names(names)]


def public_json(results: dict[str, Any]) -> dict[str, Any]:
    """The ``--output`` schema: per set accuracy, macro_f1, n; and the average."""
    out: dict[str, Any] = {k: {f: v[f] for f in ("accuracy", "macro_f1", "n")}
                           for k, v in results.items() if k != "average"}
    out["average"] = results["average"]
    return out


def format_table(rows: dict[str, dict[str, Any]], *, paper: dict[str, float] | None = PAPER_PROMPTING,
                 title: str = "") -> str:
    """Markdown table: one row per method (accuracy % / macro-F1 %), n per set, the paper's row beside."""
    sets = [s for s in TEST_SETS if any(s in r for r in rows.values())]
    sets += sorted({k for r in rows.values() for k in r if k not in sets and k != "average"})
    head = ["method"] + [SHORT_NAMES.get(s, s) for s in sets] + ["Avg"]
    lines = [f"**{title}**", ""] if title else []
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for method, res in rows.items():
        cells = [f"{100 * res[s]['accuracy']:.2f} / {100 * res[s]['macro_f1']:.2f}" if s in res else "-"
                 for s in sets]
        lines.append(f"| {method} | " + " | ".join(cells) + f" | {100 * res['average']:.2f} |")
    if paper:
        cells = [f"{paper[s]:.2f}" if s in paper else "-" for s in sets]
        lines.append("| paper: Prompting GPT2-XL (acc.) | " + " | ".join(cells) + f" | {paper['average']:.2f} |")
    n_rows = {method: [_n_cell(res.get(s)) for s in sets] for method, res in rows.items()}
    if len({tuple(v) for v in n_rows.values()}) == 1:
        n_rows = {"": next(iter(n_rows.values()))}
    for method, cells in n_rows.items():
        lines.append(f"| n{' (' + method + ')' if method else ''} | " + " | ".join(cells) + " | |")
    lines.append("")
    lines.append("Cells: accuracy / macro-F1 (%). Avg: plain mean of the accuracies.")
    if any("subsampled_from" in v for r in rows.values() for v in r.values() if isinstance(v, dict)):
        lines.append("Sets marked n/N are fixed seeded subsamples of n rows out of N (--limit).")
    return "\n".join(lines)


def _n_cell(res: dict[str, Any] | None) -> str:
    if not res:
        return "-"
    return f"{res['n']}/{res['subsampled_from']}" if "subsampled_from" in res else str(res["n"])

