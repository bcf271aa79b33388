r"""``adapt.method=distill``: a new, smaller task model (``adapt.student``, default MiniLM-L6) trained to
reproduce the teacher's probabilities on the user's own unlabeled texts (knowledge distillation, Hinton et
al. 2015; on in-domain unlabeled text, as in the task-specific distillation of TinyBERT and of Turc et
al. 2019). The runner is :mod:`unigen.adaptation.stage`; this module is the pure core.

Why on the user's texts: a student distilled on the synthetic rows alone keeps little of what the teacher
knows about real text (issue 23: MiniLM-L6 on MPNet's probabilities for all 3,000 generated texts of the
default run scored 75.4 on the seven subsamples, against 83.9 for the teacher); the user's texts are the
inputs the student will see.

Rows: at most ``adapt.max_distill`` of the texts (a seeded sample), each with the teacher's probabilities
after the threshold move to the estimated prior (:mod:`unigen.adaptation.priors`; none with
``adapt.prior=none``) as target,

    t(x) = softmax(z_teacher(x) + delta)              (adapt.targets=soft, the default for distill)
    t(x) = onehot(argmax t(x))                        (adapt.targets=hard)

plus ``round(synthetic_ratio * n)`` of the teacher's synthetic training rows with their own targets
(:func:`unigen.adaptation.pseudo_labels.mix_rows`). The student is a new model of ``adapt.student``
trained with the usual loop (soft-label CE, ``adapt.scl_weight`` for the contrastive term; the best epoch
on a held-out share of these rows, scored against the teacher's labels, so no human label anywhere).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np

from unigen.adaptation.pseudo_labels import mix_rows
from unigen.config import UniGenConfig
from unigen.seeds import derive_seed
from unigen.tam.train import TrainResult, train_task_model

__all__ = ["distill_rows", "distill_student", "train_student"]


def distill_rows(texts: list[str], teacher_probs: np.ndarray, synthetic: tuple[list[str], np.ndarray] | None,
                 *, max_distill: int, targets: str, synthetic_ratio: float, seed: int
                 ) -> tuple[list[str], np.ndarray, dict[str, Any]]:
    """The student's training rows (module docstring): ``(texts, targets (N, K), info)``."""
    probs = np.asarray(teacher_probs, dtype=np.float64)
    if len(probs) != len(texts):
        raise ValueError(f"{len(texts)} texts but {len(probs)} teacher probabilities")
    pick = np.arange(len(texts))
    if len(texts) > max_distill:
        pick = np.sort(np.random.default_rng(derive_seed(seed, "distill-sample")).permutation(
            len(texts))[:max_distill])
    chosen = probs[pick]
    if targets == "hard":
        chosen = np.eye(probs.shape[1])[chosen.argmax(1)]
    rows, row_targets, n_syn = mix_rows([texts[i] for i in pick], chosen.astype(np.float32), synthetic,
                                        synthetic_ratio, derive_seed(seed, "distill-synthetic"))
    info = {"distilled_texts": int(len(pick)), "synthetic_rows": int(n_syn),
            "teacher_positive_share": round(float((chosen.argmax(1) == probs.shape[1] - 1).mean()), 4)}
    return rows, row_targets, info


def train_student(cfg: UniGenConfig, rows: list[str], targets: np.ndarray, *, workdir: str | Path | None,
                  progress: bool = True) -> TrainResult:
    """A new ``adapt.student`` model trained on ``(rows, targets)`` with ``cfg.train``'s loop (the
    ``adapt`` section sets epochs, lr, contrastive weight and token limit; None: the student's training
    defaults). ``workdir`` holds resumable checkpoints."""
    a = cfg.adapt
    train_cfg = dataclasses.replace(cfg.train, tam=a.student, epochs=a.epochs, lr=a.lr,
                                    scl_weight=a.scl_weight, max_length=a.max_length, min_steps=0,
                                    average_from=None)
    return train_task_model((rows, np.asarray(targets, dtype=np.float32), None), train_cfg, cfg.labels,
                            seed=derive_seed(cfg.seed, "distill-student"), workdir=workdir,
                            progress=progress, device=cfg.device)


def distill_student(cfg: UniGenConfig, texts: list[str], teacher_probs: np.ndarray,
                    synthetic: tuple[list[str], np.ndarray] | None, *, workdir: str | Path | None,
                    progress: bool = True) -> tuple[TrainResult, dict[str, Any]]:
    """:func:`distill_rows` with the ``adapt`` settings, then :func:`train_student`; returns the training
    result and a record (rows distilled, synthetic rows, the teacher's positive share, best epoch, history,
    precision)."""
    a = cfg.adapt
    rows, targets, info = distill_rows(texts, teacher_probs, synthetic, max_distill=a.max_distill,
                                       targets=a.resolved_targets(), synthetic_ratio=a.synthetic_ratio,
                                       seed=cfg.seed)
    result = train_student(cfg, rows, targets, workdir=workdir, progress=progress)
    info.update(rows=len(rows), best_epoch=result.best_epoch, history=result.history,
                precision=result.precision)
    return result, info
