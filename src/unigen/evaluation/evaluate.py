"""Evaluation on the real test sets: accuracy, macro-F1, n per set and the plain mean of accuracies.

A *classifier* is anything with ``predict_ids(texts) -> (N,) int array``. :func:`load_classifier`
turns a model spec into one: ``vader``, ``prompt:<lm name or path>`` (the Prompting baseline, scored
with :class:`unigen.synth.scoring.LMScorer`), or a trained task-model folder (run by PyTorch in float32
or bfloat16, or by ONNX Runtime from a float32 export: ``evaluate.engine``, :func:`eval_engine`).
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from importlib.util import find_spec
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from sklearn.metrics import accuracy_score, f1_score

from unigen.config import UniGenConfig
from unigen.config.schema import EVAL_ENGINES
from unigen.errors import ModelNotAvailable
from unigen.evaluation.datasets import Dataset, load_dataset, parse_dataset_names
from unigen.inference import model_architecture
from unigen.tam.autocast import AutocastModel, bf16_by_default


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
    """A task model (:class:`~unigen.tam.model.TaskModel` or
    :class:`~unigen.export.onnx_model.OnnxTaskModel`):
    the label of highest probability. ``engine`` says which of the two runs it."""

    def __init__(self, model: Any, name: str, batch_size: int = 64, engine: str = "pytorch"):
        self.model, self.name, self.batch_size, self.engine = model, name, batch_size, engine

    def predict_ids(self, texts: Sequence[str]) -> np.ndarray:
        return np.asarray(self.model.predict_proba(list(texts), batch_size=self.batch_size)).argmax(axis=1)


def _onnx_installed() -> bool:
    """ONNX Runtime and the ONNX exporter are both importable."""
    return find_spec("onnxruntime") is not None and find_spec("onnx") is not None


def eval_engine(engine: str, device: str, architecture: str = "transformer") -> str:
    """``evaluate.engine`` resolved for a task model of ``architecture`` (``transformer`` | ``lstm``).

    ``auto``: a transformer -> ``pytorch-bf16`` where the device has native bf16 (the main job's MiniLM-L6:
    the float32 label on 99.8% of 2,100 real test texts, 300 per set, probabilities within 0.007, 1.8x
    the texts/s on a 2-core AVX512-BF16 CPU); otherwise, and for the LSTM (99.8% on 640 texts, 1.3x: not
    worth it), ``onnx`` on a CPU with ONNX Runtime installed, else ``pytorch``.
    """
    if engine != "auto":
        return engine
    from unigen.registry import pick_device

    device = pick_device(device)
    if bf16_by_default(architecture, device):
        return "pytorch-bf16"
    if device != "cpu" or not _onnx_installed():
        return "pytorch"
    return "onnx"


def load_task_model(path: str | Path, engine: str, device: str = "auto") -> Any:
    """A trained task model ready to predict, by ``engine``:

    * ``pytorch``: PyTorch on ``device``, float32;
    * ``pytorch-bf16``: the same under bfloat16 autocast (:class:`AutocastModel`);
    * ``onnx``: exported to a temporary folder as a float32 graph and loaded with ONNX Runtime on the CPU
      (the export checks its probabilities against PyTorch's; the folder is removed once the session holds
      the graph).
    """
    import tempfile

    from unigen.registry import pick_device
    from unigen.tam.model import TaskModel  # torch

    if engine not in EVAL_ENGINES or engine == "auto":
        raise ValueError(f"engine must be one of {', '.join(e for e in EVAL_ENGINES if e != 'auto')}; "
                         f"got {engine!r}")
    if engine == "onnx" and not _onnx_installed():
        raise ModelNotAvailable("evaluate.engine=onnx needs onnxruntime and onnx "
                                "(pip install 'unigen-sentiment[onnx]'), or use evaluate.engine=pytorch")
    model = TaskModel.from_pretrained(path, device="cpu" if engine == "onnx" else pick_device(device))
    if engine == "pytorch":
        return model
    if engine == "pytorch-bf16":
        return AutocastModel(model)
    from unigen.export.onnx_export import export_onnx
    from unigen.export.onnx_model import OnnxTaskModel

    with tempfile.TemporaryDirectory(prefix="unigen-eval-onnx-") as tmp:
        export_onnx(model, tmp)
        return OnnxTaskModel.from_pretrained(tmp)


def load_classifier(spec: str, cfg: UniGenConfig, progress: bool = True) -> Classifier:
    """``vader`` | ``prompt:<lm>`` | a task-model folder."""
    if spec == "vader":
        return VaderClassifier()
    if spec.startswith("prompt:"):
        from unigen.synth.backends import make_scorer  # torch

        lm_name = spec.split(":", 1)[1] or cfg.generator
        scorer = make_scorer(cfg, generator=lm_name)
        return PromptClassifier(scorer, f"prompt:{lm_name} ({cfg.scoring.rule})", progress)
    if Path(spec).is_dir():
        engine = eval_engine(cfg.evaluate.engine, cfg.device, model_architecture(spec))
        return TaskModelClassifier(load_task_model(spec, engine, cfg.device), spec, cfg.evaluate.batch_size,
                                   engine)
    raise ModelNotAvailable(f"unknown model '{spec}': not vader, prompt:<lm name or path>, or an existing "
                            "task-model folder")


# ---------------------------------------------------------------- evaluation

def evaluate_classifier(classifier: Classifier, datasets: Sequence[Dataset]) -> dict[str, Any]:
    """``{dataset: {"accuracy", "macro_f1", "n"}, ..., "average": mean accuracy}`` (fractions)."""
    results: dict[str, Any] = {}
    for ds in datasets:
        start = time.perf_counter()
        pred = classifier.predict_ids(ds.texts)
        num_classes = max(2, len(getattr(classifier, "labels", None) or ()), max(ds.labels, default=0) + 1,
                          int(np.max(pred, initial=0)) + 1)  # every class counts, three-way sets too
        results[ds.name] = {"accuracy": accuracy(ds.labels, pred),
                            "macro_f1": macro_f1(ds.labels, pred, num_classes),
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
