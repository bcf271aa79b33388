"""Evaluation on the real test sets: accuracy, macro-F1, n per set and the plain mean of accuracies.

A *classifier* is anything with ``predict_ids(texts) -> (N,) int array``. :func:`load_classifier`
turns a model spec into one: ``vader``, ``prompt:<lm name or path>`` (the Prompting baseline, scored
with :class:`unigen.synth.scoring.LMScorer`), or a trained task-model folder.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from sklearn.metrics import accuracy_score, f1_score

from unigen.config import UniGenConfig
from unigen.errors import ModelNotAvailable
from unigen.evaluation.datasets import Dataset, load_dataset, parse_dataset_names


class Classifier(Protocol):
    name: str

    def predict_ids(self, texts: Sequence[str]) -> np.ndarray: ...


# ---------------------------------------------------------------- metrics

def accuracy(y_true: Sequence[int], y_pred: Sequence[int]) -> float:
    """Share of correct predictions (scikit-learn's ``accuracy_score``; NaN for no rows)."""
    return float(accuracy_score(y_true, y_pred)) if len(y_true) else float("nan")


def macro_f1(y_true: Sequence[int], y_pred: Sequence[int], num_classes: int = 2) -> float:
    """Unweighted mean over the ``num_classes`` classes of F1_c = 2 TP_c / (2 TP_c + FP_c + FN_c), 0 when
    undefined (scikit-learn's ``f1_score(average="macro", zero_division=0)`` over every class)."""
    return float(f1_score(y_true, y_pred, labels=list(range(num_classes)), average="macro", zero_division=0))


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
        from unigen.synth.scoring import LMScorer  # torch

        lm_name = spec.split(":", 1)[1] or cfg.generator
        if cfg.scoring.backend == "ctranslate2":
            from unigen.synth.ct2_backend import make_ct2_scorer

            scorer = make_ct2_scorer(lm_name, cfg.labels, cfg.scoring, cfg.device)
        elif cfg.scoring.backend == "vllm":
            from unigen.synth.vllm_backend import make_vllm_scorer  # vllm, CUDA

            scorer = make_vllm_scorer(lm_name, cfg.labels, cfg.scoring)
        else:
            scorer = LMScorer.from_name(lm_name, cfg.labels, cfg.scoring, device=cfg.device)
        return PromptClassifier(scorer, f"prompt:{lm_name} ({cfg.scoring.rule})", progress)
    if Path(spec).is_dir():
        from unigen.tam.model import TaskModel  # torch

        return TaskModelClassifier(TaskModel.from_pretrained(spec), spec)
    raise ModelNotAvailable(f"unknown model '{spec}': not vader, prompt:<lm name or path>, or an existing "
                            "task-model folder")


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
