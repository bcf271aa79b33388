"""``unigen adapt``: a task model adapted to a user's own unlabeled texts, as a resumable stage.

Writes ``<workdir>/06_adapt/<fingerprint>/`` (or exactly ``path``; layout in :mod:`unigen.stages`):
``model/`` (the adapted task model, loadable by ``unigen predict``/``serve``/``export`` like any other,
its card naming the adaptation data and the method), ``lm.json`` (the LM's scores of its sample, kept so a
resumed run does not score again) and, while it runs, ``rounds/round-R/`` (the model after self-training
round ``R`` and that round's training checkpoints). A killed run resumes after its last finished round
(and inside a round after its last finished epoch); ``rounds/`` is removed when the stage finishes.

The fingerprint covers the model (the sha256 of its ``unigen_tam.json``, which records the sha256 of
every other file of the folder), the texts file's sha256, the text column, the ``adapt`` settings, the
training settings the fine-tuning reuses, the labeler and its scoring settings, labels and seed.

Steps (formulas in :mod:`unigen.adaptation.priors` and :mod:`unigen.adaptation.pseudo_labels`):

1. read the texts (:mod:`unigen.textfiles`; only the text column: labels in the file are never read);
2. the LM's calibrated-verbalizer scores on a seeded sample of ``adapt.lm_sample`` texts when the prior
   or the pseudo-labels use it, and the task model's logits on every text, or only on that sample when
   nothing else reads the rest (:meth:`~unigen.config.adaptation.AdaptConfig.sample_only`: the LM's labels
   make the prior and the pseudo-label pool, and the threshold is a quantile of the sample's margins);
3. the class prior ``pi_t`` (``adapt.prior``) and the logit offset that makes the model predict it (none
   by default for self_train and distill: the model keeps its threshold, and ``pi_t`` is its own share);
4. ``self_train``: for each of ``adapt.rounds`` rounds, pseudo-labels from the offset model and the LM,
   the most confident per class in ``pi_t``'s proportions, mixed with the model's synthetic training rows,
   and ``adapt.epochs`` of :func:`unigen.tam.train.train_task_model` warm-started from the current model;
   then (``adapt.match_prior``) the offset moved to ``pi_t`` again;
   ``distill``: a new ``adapt.student`` model (``teacher``: the model with ``adapt.student_layers`` of its
   layers kept, warm-started from its weights) trained on the offset model's probabilities for the texts
   (:mod:`unigen.adaptation.distill`; checkpoints in ``student/`` while it runs), then the same offset move;
5. the offset is added to the classifier's output bias and the model saved with an ``adaptation`` record.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from unigen.adaptation.distill import check_student, distill_student
from unigen.adaptation.lm_scores import lm_probs, lm_sample_index, seeded_sample
from unigen.adaptation.priors import estimate_prior, hard_share, logit_offset, softmax
from unigen.adaptation.pseudo_labels import mix_rows, pseudo_labels, select_per_class
from unigen.config import UniGenConfig, fingerprint_dict, load_config
from unigen.console import progress_bar, warn
from unigen.errors import DataError, ModelNotAvailable
from unigen.files import sha256_file
from unigen.lock import workdir_lock
from unigen.seeds import derive_seed
from unigen.stages import MANIFEST, STAGES, Stage, iter_stage_rows, open_stage
from unigen.tam import autocast
from unigen.tam.model import CONFIG_NAME, TaskModel
from unigen.tam.train import train_task_model
from unigen.tam.training_data import parse_rows, read_training_rows
from unigen.textfiles import open_texts

__all__ = ["MODEL_DIR", "adapt", "adapt_stage", "read_texts", "task_model_folder"]

MODEL_DIR = "model"
ROUNDS_DIR = "rounds"
STUDENT_DIR = "student"
DEFAULT_WORKDIR = "runs/default"
#: texts per chunk of the task model's prediction (one progress-bar step)
PREDICT_CHUNK = 256
#: texts the share after self-training is reported on when no later step needs every text's logits
SHARE_TEXTS = 500
#: training settings the fine-tuning does not take from ``train`` (``adapt`` sets them, or the model has them)
_NOT_FROM_TRAIN = ("tam", "epochs", "lr", "scl_weight", "max_length", "predict_max_length", "pooling",
                   "lstm_hidden", "projection_dim", "min_steps", "average_from")


# ---------------------------------------------------------------- inputs

def task_model_folder(path: str | Path) -> Path:
    """The task-model folder of ``path`` (itself, or the ``model/`` of a train or adapt stage folder); a
    one-line :class:`ModelNotAvailable` for anything else (an ONNX export included: adapting trains)."""
    path = Path(path)
    if not path.is_dir():
        raise ModelNotAvailable(f"{path}: no such folder (expected a task model written by `unigen train` or "
                                "`unigen adapt`)")
    if (path / CONFIG_NAME).is_file():
        return path
    if (path / MODEL_DIR / CONFIG_NAME).is_file():
        return path / MODEL_DIR
    what = " (an ONNX export: adapt the PyTorch model folder it came from)" \
        if (path / "unigen_onnx.json").is_file() else ""
    raise ModelNotAvailable(f"{path} is not a task-model folder (no {CONFIG_NAME}){what}")


def read_texts(path: str | Path, *, text_field: str | None = None, min_texts: int = 2
               ) -> tuple[list[str], dict[str, Any]]:
    """The non-empty texts of ``path`` and a record of the file (name, rows, sha256, the text column, the
    columns left unread); only the text column is read, so labels in the file never are."""
    source = open_texts(path, text_field=text_field)
    with source:
        texts = [row.text for row in source if not row.empty]
    info = {"file": Path(path).name, "path": str(Path(path).resolve()), "rows": len(texts),
            "sha256": sha256_file(path), "text_field": source.text_field, "format": source.format,
            "unread_columns": [c for c in source.columns if c != source.text_field]}
    if not texts:
        raise DataError(f"{path}: no texts (every row is empty)")
    if len(texts) < min_texts:
        raise DataError(f"{path}: {len(texts)} non-empty text(s); adapting needs at least {min_texts} "
                        "(adapt.min_texts)")
    return texts, info


def model_record(model_dir: Path) -> dict[str, Any]:
    return json.loads((model_dir / CONFIG_NAME).read_text(encoding="utf-8"))


def labeler_of(cfg: UniGenConfig, record: dict[str, Any]) -> str:
    """``adapt.labeler``, else the generator of the model's training record, else ``generator``."""
    data = (record.get("training") or {}).get("data") or {}
    return cfg.adapt.labeler or data.get("generator") or cfg.generator


def relabel_temperature(cfg: UniGenConfig, record: dict[str, Any]) -> float:
    """The temperature of the LM's calibrated probabilities the model was trained on (its training
    record), else ``relabel.temperature``."""
    data = (record.get("training") or {}).get("data") or {}
    return float((data.get("relabel") or {}).get("temperature") or cfg.relabel.temperature)


def source_prior(record: dict[str, Any], labels: tuple[str, ...]) -> np.ndarray:
    """The class shares of the model's synthetic training rows (uniform when not recorded)."""
    kept = ((record.get("training") or {}).get("data") or {}).get("kept_per_label") or {}
    counts = np.array([float(kept.get(lab, 0)) for lab in labels])
    return counts / counts.sum() if counts.sum() > 0 and (counts > 0).all() else np.full(len(labels),
                                                                                       1 / len(labels))


def synthetic_rows(model_dir: Path, num_labels: int) -> tuple[tuple[list[str], np.ndarray] | None, str]:
    """The model's synthetic training rows, from its provenance: an adapted model's record, its train
    stage's upstream weight folder, or the JSONL file it was trained on; ``(None, why)`` when none is
    found."""
    training = model_record(model_dir).get("training") or {}
    candidates: list[Path] = []
    if (earlier := (training.get("adaptation") or {}).get("synthetic_from")):
        candidates.append(Path(earlier))
    stage = model_dir.parent
    if (stage / MANIFEST).is_file():
        manifest = json.loads((stage / MANIFEST).read_text(encoding="utf-8"))
        weight = (manifest.get("upstream") or {}).get("weight")
        if manifest.get("stage") == "train" and weight:
            candidates.append(stage.resolve().parent.parent / STAGES["weight"].folder / str(weight))
    if training.get("source"):
        candidates.append(Path(training["source"]))
    for where in candidates:
        try:
            if where.is_dir():
                data = parse_rows(list(iter_stage_rows(where, "weight")), num_labels, source=str(where))
            elif where.is_file():
                data = read_training_rows(where, num_labels)
            else:
                continue
        except (DataError, OSError, ValueError) as exc:
            warn(f"{where}: the model's synthetic rows cannot be read ({exc}); adapting without them")
            return None, ""
        return (data.texts, data.targets), str(where.resolve())
    return None, ""


# ---------------------------------------------------------------- settings and scores

def adapt_settings(cfg: UniGenConfig, labeler: str | None, text_field: str | None, tau: float
                   ) -> dict[str, Any]:
    """The settings that determine the adapted model (the stage fingerprint, with the model and texts
    upstream)."""
    train = {k: v for k, v in fingerprint_dict(cfg.train).items() if k not in _NOT_FROM_TRAIN}
    uses_lm = cfg.adapt.needs_lm()
    return {"adapt": fingerprint_dict(cfg.adapt), "train": train, "labels": list(cfg.labels),
            "seed": cfg.seed, "text_field": text_field, "labeler": labeler if uses_lm else None,
            "scoring": fingerprint_dict(cfg.scoring) if uses_lm else None,
            "relabel_temperature": tau if uses_lm else None}


def model_logits(model: TaskModel, texts: list[str], batch_size: int, progress: bool, desc: str
                 ) -> np.ndarray:
    """The task model's logits of every text, in chunks behind a progress bar (rate and ETA).

    A transformer runs under bfloat16 autocast where its device computes bf16 natively, as evaluation does
    (``evaluate.engine=auto``; on the default MPNet-base the float32 label on 99.9% of 2,100 real test
    texts at 2.9x the texts/s, results/serving.md): the stage's passes over the user's texts are most of
    its time."""
    out = np.zeros((len(texts), len(model.labels)), dtype=np.float64)
    bf16 = autocast.bf16_by_default(model.spec.architecture, model.device.type)
    with progress_bar(len(texts), desc, progress, unit="text", leave=False) as bar, \
            torch.autocast(model.device.type, dtype=torch.bfloat16, enabled=bf16):
        for start in range(0, len(texts), PREDICT_CHUNK):
            chunk = texts[start:start + PREDICT_CHUNK]
            out[start:start + len(chunk)] = model.logits(chunk, batch_size=batch_size)
            bar.update(len(chunk))
    return out


def share_sample_index(n: int, seed: int) -> np.ndarray:
    """The seeded texts whose predictions give the reported share after self-training when nothing else
    needs the final model's logits (``SHARE_TEXTS`` of them: binomial error about 2% of share; a pass over
    2,000 long reviews takes MPNet about 2 minutes on a 2-core CPU)."""
    return seeded_sample(n, SHARE_TEXTS, seed, "adapt-share")


def add_offset(model: TaskModel, delta: np.ndarray) -> None:
    """Add ``delta`` to the classifier's output bias: every logit moves by it, on every backend."""
    with torch.no_grad():
        bias = model.classifier[-1].bias
        bias.add_(torch.as_tensor(delta, dtype=bias.dtype, device=bias.device))


# ---------------------------------------------------------------- self-training

def _round_dir(stage: Stage, r: int) -> Path:
    return stage.path / ROUNDS_DIR / f"round-{r}"


def _self_train_round(stage: Stage, cfg: UniGenConfig, model: TaskModel, r: int, texts: list[str],
                      logits: np.ndarray, prior: np.ndarray, lm: tuple[np.ndarray | None, np.ndarray | None],
                      synthetic: tuple[list[str], np.ndarray] | None, progress: bool
                      ) -> tuple[TaskModel, dict]:
    """One round: offset, pseudo-labels, selection, fine-tuning; the round's model is saved."""
    a = cfg.adapt
    delta = logit_offset(logits, prior)
    add_offset(model, delta)
    probs = softmax(logits + delta)
    index, q = lm
    pool = np.arange(len(texts)) if a.pseudo_labels == "model" or index is None else index
    labels, conf, usable, soft = pseudo_labels(a.pseudo_labels, probs[pool],
                                                None if a.pseudo_labels == "model" else q)
    n_select = min(a.max_pseudo, int(round(a.select_fraction * len(pool))))
    chosen = select_per_class(labels, conf, usable, prior, n_select)
    if len(chosen) < 2:
        raise DataError(f"only {len(chosen)} text(s) got a pseudo-label (adapt.pseudo_labels="
                        f"{a.pseudo_labels}); give more texts, or use adapt.method=prior")
    eye = np.eye(len(cfg.labels), dtype=np.float32)
    targets = eye[labels[chosen]] if a.resolved_targets() == "hard" else soft[chosen]
    rows, rows_targets, n_syn = mix_rows([texts[pool[i]] for i in chosen], targets, synthetic,
                                         a.synthetic_ratio, derive_seed(cfg.seed, "adapt-synthetic", r))
    arch = model.spec.architecture
    train_cfg = dataclasses.replace(cfg.train, tam="lstm" if arch == "lstm" else model.spec.encoder,
                                    epochs=a.epochs or 1, lr=a.resolved_lr(), scl_weight=a.scl_weight,
                                    max_length=a.resolved_max_length(), min_steps=0, average_from=None)
    result = train_task_model((rows, rows_targets, None), train_cfg, cfg.labels,
                              seed=derive_seed(cfg.seed, "adapt-round", r),
                              workdir=_round_dir(stage, r) / "checkpoints", progress=progress,
                              device=cfg.device, init_model=model)
    info = {"round": r, "offset": np.round(delta, 6).tolist(), "pool": int(len(pool)),
            "usable": int(usable.sum()), "pseudo_labelled": int(len(chosen)),
            "pseudo_per_label": {lab: int((labels[chosen] == k).sum()) for k, lab in enumerate(cfg.labels)},
            "synthetic_rows": n_syn, "history": result.history}
    result.model.save_pretrained(_round_dir(stage, r) / MODEL_DIR, training={"round": info})
    return result.model, info


def _distill(stage: Stage, cfg: UniGenConfig, model_dir: Path, teacher: TaskModel, texts: list[str],
             logits: np.ndarray, prior: np.ndarray | None, progress: bool
             ) -> tuple[TaskModel, np.ndarray, dict, str]:
    """``distill``: the student trained on the threshold-moved teacher's probabilities; returns the
    student, its logits on the texts, a record and where the synthetic rows came from.

    ``teacher`` is the model as loaded (``logits`` are its logits): the offset ``delta`` enters the targets
    only, so a student made from the teacher's layers (``adapt.student=teacher``) starts from its own,
    un-moved weights, and the stage's final threshold move is computed on the student's logits."""
    a = cfg.adapt
    delta = logit_offset(logits, prior) if prior is not None else np.zeros(logits.shape[1])
    synthetic, synthetic_from = synthetic_rows(model_dir, len(cfg.labels)) if a.synthetic_ratio > 0 \
        else (None, "")
    result, info = distill_student(cfg, texts, softmax(logits + delta), synthetic,
                                   workdir=stage.path / STUDENT_DIR / "checkpoints", progress=progress,
                                   teacher=teacher)
    student = result.model.to("cpu")
    info.update(teacher_offset=np.round(delta, 6).tolist())
    logits = model_logits(student, texts, a.batch_size, progress, "adapt: student")
    return student, logits, info, synthetic_from


def _finished_round(stage: Stage, r: int) -> tuple[TaskModel, dict] | None:
    folder = _round_dir(stage, r) / MODEL_DIR
    if not (folder / CONFIG_NAME).is_file():
        return None
    try:
        model = TaskModel.from_pretrained(folder)
    except ModelNotAvailable:
        return None
    return model, model_record(folder)["training"]["round"]


# ---------------------------------------------------------------- the stage

def adapt_stage(cfg: UniGenConfig, model: str | Path, texts_path: str | Path, *,
                workdir: str | Path | None = None, path: str | Path | None = None, progress: bool = True,
                text_field: str | None = None, scorer: Any = None) -> Path:
    """Run (or resume, or skip) the adapt stage; returns the stage folder (the model is its ``model/``).

    ``workdir``: the folder is ``<workdir>/06_adapt/<fingerprint>``; ``path``: exactly this folder.
    ``scorer``: the LM scorer (default: built from the labeler; tests pass a fake).
    """
    model_dir = task_model_folder(model)
    check_student(cfg, TaskModel.from_pretrained(model_dir))  # one-line errors now, before the texts
    record = model_record(model_dir)
    labels = tuple(record.get("labels") or ())
    if labels != tuple(cfg.labels):
        raise ModelNotAvailable(f"{model_dir}: the model's labels {', '.join(labels)} differ from the "
                                f"configuration's {', '.join(cfg.labels)}; set labels to match")
    texts, info = read_texts(texts_path, text_field=text_field, min_texts=cfg.adapt.min_texts)
    labeler = labeler_of(cfg, record)
    tau = relabel_temperature(cfg, record)
    upstream = {"model": sha256_file(model_dir / CONFIG_NAME)[:12], "texts": info["sha256"][:12]}
    stage = open_stage("adapt", adapt_settings(cfg, labeler, text_field, tau),
                       workdir=workdir, path=path, upstream=upstream, seed=cfg.seed)
    if stage.complete:
        return stage.path
    tic = time.perf_counter()
    return _adapt_into(stage, cfg, model_dir, record, texts, info, labeler, tau, scorer, progress, tic)


def _adapt_into(stage: Stage, cfg: UniGenConfig, model_dir: Path, record: dict[str, Any], texts: list[str],
                info: dict[str, Any], labeler: str, tau: float, scorer: Any, progress: bool, tic: float
                ) -> Path:
    a = cfg.adapt
    task = TaskModel.from_pretrained(model_dir, device="cpu")
    if a.sample_only() and len(texts) > a.lm_sample:  # the method reads the LM's sample only
        texts = [texts[i] for i in lm_sample_index(len(texts), a.lm_sample, cfg.seed)]
    lm = lm_probs(stage, cfg, texts, labeler, tau, scorer, progress)
    logits = model_logits(task, texts, a.batch_size, progress, "adapt: task model")
    before = hard_share(logits)
    prior = estimate_prior(a.resolved_prior(), model_logits=logits, lm_probs=lm[1], lm_index=lm[0],
                           source_prior=source_prior(record, cfg.labels), em_temperature=a.em_temperature,
                           em_iterations=a.em_iterations)
    rounds: list[dict[str, Any]] = []
    synthetic_from = ""
    if a.method == "self_train":
        synthetic, synthetic_from = synthetic_rows(model_dir, len(cfg.labels)) if a.synthetic_ratio > 0 \
            else (None, "")
        if synthetic is None and a.synthetic_ratio > 0:
            warn(f"{model_dir}: the model's synthetic training rows were not found (no train stage or "
                 "training file recorded); fine-tuning on the pseudo-labels alone")
        round_prior = prior if prior is not None else hard_share(logits)
        for r in range(1, a.rounds + 1):
            done = _finished_round(stage, r)
            if done is None:
                done = _self_train_round(stage, cfg, task, r, texts, logits, round_prior, lm, synthetic,
                                         progress)
            task, round_info = done
            rounds.append(round_info)
            if r == a.rounds and (prior is None or not a.match_prior):  # only the share after reads them
                share_idx = share_sample_index(len(texts), cfg.seed)
                texts_for_share = [texts[i] for i in share_idx]
            else:
                texts_for_share = texts
            logits = model_logits(task, texts_for_share, a.batch_size, progress, f"adapt: round {r} model")
    distilled: dict[str, Any] | None = None
    if a.method == "distill":
        task, logits, distilled, synthetic_from = _distill(stage, cfg, model_dir, task, texts, logits,
                                                             prior, progress)
    delta = np.zeros(len(cfg.labels))
    if prior is not None and (a.method == "prior" or a.match_prior):
        delta = logit_offset(logits, prior)
        add_offset(task, delta)
    after = hard_share(logits + delta)
    adaptation = {
        "data": {k: info[k] for k in ("file", "rows", "sha256", "text_field", "format", "unread_columns")},
        "method": a.method, "prior_estimator": a.resolved_prior(),
        "settings": fingerprint_dict(a), "labeler": labeler if a.needs_lm() else None,
        "lm_texts": None if lm[0] is None else int(len(lm[0])), "model_texts": len(texts),
        "share_after_texts": len(logits),
        "prior": None if prior is None else {k: round(float(v), 4) for k, v in zip(cfg.labels, prior)},
        "predicted_share_before": {k: round(float(v), 4) for k, v in zip(cfg.labels, before)},
        "predicted_share_after": {k: round(float(v), 4) for k, v in zip(cfg.labels, after)},
        "logit_offset": np.round(delta, 6).tolist(), "rounds": [
            {k: v for k, v in r.items() if k != "history"} for r in rounds],
        "synthetic_from": synthetic_from or None, "adapted_from": str(model_dir.resolve()),
        "seconds": round(time.perf_counter() - tic, 1)}
    training = {**(record.get("training") or {}), "adaptation": adaptation}
    if distilled is not None:  # the student's own training, the teacher's data provenance
        adaptation["student"] = {k: v for k, v in distilled.items() if k != "history"}
        training = {"data": (record.get("training") or {}).get("data"), "history": distilled["history"],
                    "precision": distilled["precision"], "adaptation": adaptation}
    task.save_pretrained(stage.path / MODEL_DIR, training=training)
    shutil.rmtree(stage.path / ROUNDS_DIR, ignore_errors=True)
    shutil.rmtree(stage.path / STUDENT_DIR, ignore_errors=True)
    stage.finish({"texts": info["rows"], "model_texts": len(texts), "lm_texts": adaptation["lm_texts"],
                  "pseudo_labelled": sum(r["pseudo_labelled"] for r in rounds),
                  "positive_share_before": round(float(before[-1]), 4),
                  "positive_share_after": round(float(after[-1]), 4)},
                 adaptation={k: adaptation[k] for k in ("data", "method", "prior", "logit_offset",
                                                        "labeler")})
    return stage.path


def default_workdir(model: str | Path) -> str:
    """The work folder of a model inside one (``W/04_train/<fp>[/model]``), else ``runs/default``."""
    folder = task_model_folder(model)
    stage = folder.parent if folder.name == MODEL_DIR else folder
    if (stage / MANIFEST).is_file():
        return str(stage.resolve().parent.parent)
    return DEFAULT_WORKDIR


def adapt(model: str | Path, texts: str | Path, *, workdir: str | Path | None = None,
          output: str | Path | None = None, config: str | Path | UniGenConfig | None = None,
          overrides: list[str] | tuple[str, ...] = (), text_field: str | None = None, progress: bool = True,
          wait: bool = False, scorer: Any = None) -> Path:
    """Adapt the task model ``model`` to the unlabeled texts of the file ``texts``; returns the adapted
    model's folder (``<stage>/model``).

    ``workdir`` (default: the work folder holding ``model``, else ``runs/default``) is locked while the
    stage runs (``wait``: queue behind another process); ``output`` writes the stage into exactly that
    folder instead. ``config`` is a YAML file or a :class:`UniGenConfig`; ``overrides`` are dotted
    settings (``["adapt.prior=lm"]``).
    """
    cfg = config if isinstance(config, UniGenConfig) else load_config(config, list(overrides))
    if isinstance(config, UniGenConfig) and overrides:
        raise ValueError("give overrides with a config file, or put them in the UniGenConfig")
    if output is not None:
        stage_path = adapt_stage(cfg, model, texts, path=output, progress=progress, text_field=text_field,
                                 scorer=scorer)
    else:
        where = workdir if workdir is not None else default_workdir(model)
        with workdir_lock(where, wait=wait):
            stage_path = adapt_stage(cfg, model, texts, workdir=where, progress=progress,
                                     text_field=text_field, scorer=scorer)
    return stage_path / MODEL_DIR
