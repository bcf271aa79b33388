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

``adapt.student=teacher``: the student is the teacher itself with ``adapt.student_layers`` of its ``L``
transformer layers kept, evenly spaced with the last included
(:meth:`unigen.tam.model.TaskModel.with_layers`), warm-started from the teacher's weights (embeddings,
kept layers, pooling, projection and classifier heads), as DistilBERT was initialised from every other
layer of its teacher: half the layers should give about twice the texts/s, and it starts close to the
teacher (neither measured yet). The copy is made from the teacher's own weights: the threshold move
``delta`` is only in the targets, never in the student's initial classifier bias.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np

from unigen.adaptation.pseudo_labels import mix_rows
from unigen.config import ConfigError, UniGenConfig
from unigen.seeds import derive_seed
from unigen.tam.layers import kept_layer_indices
from unigen.tam.model import TaskModel
from unigen.tam.train import TrainResult, train_task_model

__all__ = ["TEACHER", "check_student", "distill_rows", "distill_student", "student_init", "train_student"]

#: ``adapt.student``'s value for the teacher itself with ``adapt.student_layers`` layers kept
TEACHER = "teacher"


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


def check_student(cfg: UniGenConfig, teacher: TaskModel) -> None:
    """A one-line :class:`~unigen.errors.ConfigError` when ``adapt.student=teacher`` cannot be made from
    ``teacher`` (an LSTM, or fewer layers than ``adapt.student_layers``); nothing otherwise."""
    a = cfg.adapt
    if a.method != "distill" or a.student != TEACHER:
        return
    if teacher.spec.architecture != "transformer":
        raise ConfigError("adapt.student=teacher keeps some of a transformer teacher's layers, and this "
                          "model is an LSTM: name an encoder instead (adapt.student=minilm-l6)")
    if a.student_layers > (total := int(teacher.num_layers or 0)):
        raise ConfigError(f"adapt.student_layers={a.student_layers}, but the teacher "
                          f"({teacher.spec.encoder}) has {total} layers")


def student_init(cfg: UniGenConfig, teacher: str | Path | TaskModel | None) -> TaskModel | None:
    """The student's initial model: None for a new ``adapt.student`` encoder; for ``adapt.student=teacher``
    the teacher (a model, or its folder) with ``adapt.student_layers`` layers kept
    (:meth:`~unigen.tam.model.TaskModel.with_layers`), made from the weights as given, on the CPU."""
    if cfg.adapt.student != TEACHER:
        return None
    if teacher is None:
        raise ValueError("adapt.student=teacher: give the teacher model (teacher=) to build the student from")
    model = teacher if isinstance(teacher, TaskModel) else TaskModel.from_pretrained(teacher)
    check_student(dataclasses.replace(cfg, adapt=dataclasses.replace(cfg.adapt, method="distill")), model)
    return model.with_layers(cfg.adapt.student_layers).cpu()


def train_student(cfg: UniGenConfig, rows: list[str], targets: np.ndarray, *, workdir: str | Path | None,
                  progress: bool = True, init_model: TaskModel | None = None) -> TrainResult:
    """A new ``adapt.student`` model (or, with ``init_model``, a copy of it: :func:`student_init`) trained
    on ``(rows, targets)`` with ``cfg.train``'s loop (the ``adapt`` section sets epochs, lr, contrastive
    weight and token limit; None: the student's training defaults). ``workdir`` holds resumable
    checkpoints."""
    a = cfg.adapt
    tam = a.student if init_model is None else init_model.spec.encoder
    train_cfg = dataclasses.replace(cfg.train, tam=tam, epochs=a.epochs, lr=a.resolved_lr(),
                                    scl_weight=a.scl_weight, max_length=a.resolved_max_length(), min_steps=0,
                                    average_from=None)
    return train_task_model((rows, np.asarray(targets, dtype=np.float32), None), train_cfg, cfg.labels,
                            seed=derive_seed(cfg.seed, "distill-student"), workdir=workdir,
                            progress=progress, device=cfg.device, init_model=init_model)


def distill_student(cfg: UniGenConfig, texts: list[str], teacher_probs: np.ndarray,
                    synthetic: tuple[list[str], np.ndarray] | None, *, workdir: str | Path | None,
                    progress: bool = True, teacher: str | Path | TaskModel | None = None
                    ) -> tuple[TrainResult, dict[str, Any]]:
    """:func:`distill_rows` with the ``adapt`` settings, then :func:`train_student`; returns the training
    result and a record (the student's encoder, rows distilled, synthetic rows, the teacher's positive share,
    best epoch, history, precision; for ``adapt.student=teacher`` also ``student_layers``,
    ``teacher_layers`` and ``kept_layers``).

    ``teacher``: the teacher model or its folder, needed only for ``adapt.student=teacher``; give its own
    weights (not with the threshold move added to its bias: that is in ``teacher_probs`` already)."""
    a = cfg.adapt
    if a.student == TEACHER and teacher is not None and not isinstance(teacher, TaskModel):
        teacher = TaskModel.from_pretrained(teacher)
    init = student_init(cfg, teacher)
    rows, targets, info = distill_rows(texts, teacher_probs, synthetic, max_distill=a.max_distill,
                                       targets=a.resolved_targets(), synthetic_ratio=a.synthetic_ratio,
                                       seed=cfg.seed)
    result = train_student(cfg, rows, targets, workdir=workdir, progress=progress, init_model=init)
    if init is None:
        info = {"encoder": a.student, **info}
    else:
        total = int(teacher.num_layers)  # type: ignore[union-attr]  # a TaskModel here
        info = {"encoder": init.spec.encoder, "from_teacher": True, "student_layers": a.student_layers,
                "teacher_layers": total, "kept_layers": kept_layer_indices(total, a.student_layers), **info}
    info.update(rows=len(rows), best_epoch=result.best_epoch, history=result.history,
                precision=result.precision)
    return result, info
