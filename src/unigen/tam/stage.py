"""Stage 4 (``unigen train``): one task model trained on the selected weighted rows.

Writes ``<workdir>/04_train/<fingerprint>/`` (layout in :mod:`unigen.stages`): the model in ``model/``
(safetensors + JSON + model card, :meth:`unigen.tam.model.TaskModel.save_pretrained`, with a ``training``
record of rows, seed, epochs, best epoch, per-epoch history, the train settings and how the rows were
made) and ``checkpoints/metrics.jsonl``. While it runs, ``checkpoints/checkpoint.pt`` holds the state
after the last finished epoch; a killed run resumes from it, and it is deleted once the model is saved.

Input: the weight stage folder (rows with ``keep`` true; weights gate the memory bank), or a JSONL file of
training rows (:mod:`unigen.tam.training_data`), identified in the fingerprint by its content hash.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from unigen.config import UniGenConfig, fingerprint_dict
from unigen.files import file_digest
from unigen.stages import Stage, iter_stage_rows, open_stage, training_data_record
from unigen.tam.train import CHECKPOINT_NAME, train_task_model
from unigen.tam.training_data import TrainingData, parse_rows, read_training_rows

MODEL_DIR = "model"
CHECKPOINT_DIR = "checkpoints"


def train_settings(cfg: UniGenConfig, tam: str | None = None) -> dict[str, Any]:
    """The settings that determine the trained model (``tam`` overrides ``train.tam``)."""
    train_cfg = cfg.train if tam is None else dataclasses.replace(cfg.train, tam=tam)
    return {"train": fingerprint_dict(train_cfg), "labels": list(cfg.labels), "seed": cfg.seed}


def _train_into(stage: Stage, data: TrainingData, cfg: UniGenConfig, tam: str, source: str, progress: bool,
                keep_checkpoint: bool, provenance: dict[str, Any] | None = None) -> Path:
    train_cfg = dataclasses.replace(cfg.train, tam=tam)
    result = train_task_model(data, train_cfg, cfg.labels, seed=cfg.seed, workdir=stage.path / CHECKPOINT_DIR,
                              progress=progress, device=cfg.device, final_checkpoint=keep_checkpoint)
    result.model.save_pretrained(stage.path / MODEL_DIR, training={
        "rows": len(data.texts), "seed": cfg.seed, "epochs": len(result.history),
        "best_epoch": result.best_epoch, "best_valid_acc": result.best_valid_acc, "history": result.history,
        "averaged": result.averaged, "precision": result.precision,
        "settings": train_settings(cfg, tam)["train"], "data": provenance or {},
        **({"source": source} if source else {})})
    if not keep_checkpoint:
        (stage.path / CHECKPOINT_DIR / CHECKPOINT_NAME).unlink(missing_ok=True)
    stage.finish(
        {
            "rows": len(data.texts),
            "best_epoch": result.best_epoch,
            "best_valid_acc": result.best_valid_acc,
            "averaged": result.averaged,
            "tam": tam,
        },
        **({"data": source} if source else {}),
    )
    return stage.path


def train_stage(
    cfg: UniGenConfig,
    workdir: str | Path | None,
    weight_dir: str | Path,
    tam: str | None = None,
    *,
    progress: bool = True,
    path: str | Path | None = None,
    keep_checkpoint: bool = False,
) -> Path:
    """Run (or resume, or skip) the train stage on a finished weight folder; returns the stage folder.

    ``tam`` defaults to ``train.tam``; the folder is ``<workdir>/04_train/<fingerprint>``, or exactly
    ``path``.
    """
    tam = tam or cfg.train.tam
    upstream = {"weight": Stage.load(weight_dir, "weight").fingerprint}
    stage = open_stage("train", train_settings(cfg, tam), workdir=workdir, path=path, upstream=upstream,
                       seed=cfg.seed)
    if stage.complete:
        return stage.path
    data = parse_rows(list(iter_stage_rows(weight_dir, "weight")), len(cfg.labels), source=str(weight_dir))
    return _train_into(stage, data, cfg, tam, "", progress, keep_checkpoint, training_data_record(weight_dir))


def train_file(data_path: str | Path, cfg: UniGenConfig, *, workdir: str | Path | None = None,
               path: str | Path | None = None, progress: bool = True, keep_checkpoint: bool = False) -> Path:
    """The train stage for a JSONL file of training rows (``train.tam`` picks the model)."""
    data = read_training_rows(data_path, len(cfg.labels))
    stage = open_stage("train", train_settings(cfg), workdir=workdir, path=path,
                       upstream={"data": file_digest(data_path)}, seed=cfg.seed)
    if stage.complete:
        return stage.path
    return _train_into(stage, data, cfg, cfg.train.tam, str(data_path), progress, keep_checkpoint)

