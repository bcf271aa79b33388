"""Stage 3 (``unigen weight``): SunGen sample weights of the kept relabeled rows, and the top-K selection.

The bi-level optimisation itself is :mod:`unigen.weighting.sungen` (model-agnostic). This module builds its
task model (``weight.tam``, the LSTM by default: the cheap choice on CPU), runs it with resume, and writes
the stage folder ``<workdir>/03_weight/<fingerprint>/`` (layout in :mod:`unigen.stages`):

* ``shards/shard-00000.jsonl``: the training rows (``id``, ``text``, ``prompt_label``, ``label`` and, for
  soft relabeling, ``probs``) plus ``weight`` (= sigmoid(theta)), ``theta`` and ``keep`` (true for the top
  ``weight.keep_top`` rows, or ``weight.keep_fraction`` of them); without weighting (``weight.enabled``
  off) the rows pass through unchanged;
* ``history.jsonl``: per outer epoch, outer loss and weight statistics;
* ``state.pt``: the resumable state after every outer epoch (deleted when finished);
* ``manifest.json``: its counts are the weight statistics (rows, selected, mean/min/max weight).

Input: the relabel stage folder (its kept rows, reshaped by :func:`training_rows`), or, for rows made
elsewhere, a JSONL file of training rows (``text`` plus ``probs`` or ``label``; rows with ``keep`` false
are skipped), identified in the fingerprint by its content hash.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from unigen.config import TrainConfig, UniGenConfig, WeightConfig, fingerprint_dict
from unigen.errors import StageError
from unigen.files import atomic_torch_save, file_digest, iter_jsonl, write_jsonl_atomic
from unigen.registry import pick_device
from unigen.stages import Stage, iter_stage_rows, open_stage
from unigen.tam.model import TaskModel
from unigen.tam.training_data import TrainingData, parse_rows, read_training_rows
from unigen.weighting.sungen import WeightResult, WeightState, learn_sample_weights


def weight_settings(cfg: UniGenConfig) -> dict[str, Any]:
    """The settings that determine the weighted rows (the weighting task model's shape is ``train.*``)."""
    t = cfg.train
    return {"weight": fingerprint_dict(cfg.weight), "labels": list(cfg.labels), "seed": cfg.seed,
            "relabel_mode": cfg.relabel.mode,
            "tam_shape": {"max_length": t.max_length, "lstm_hidden": t.lstm_hidden,
                          "projection_dim": t.projection_dim}}


def training_rows(relabeled: Iterable[dict[str, Any]], mode: str) -> list[dict[str, Any]]:
    """Kept relabeled rows as training rows: soft -> ``probs``; hard -> relabel argmax; none -> prompt
    label."""
    rows = []
    for r in relabeled:
        if not r.get("keep", True):
            continue
        row = {"id": r["id"], "text": r["text"], "prompt_label": r["prompt_label"]}
        if mode == "soft":
            row["probs"] = r["probs"]
        row["label"] = r["prompt_label"] if mode == "none" else r["label"]
        rows.append(row)
    return rows


def weight_samples(data: TrainingData, config: WeightConfig, labels: Sequence[str], *, seed: int,
                   train: TrainConfig, vectors: Any = None, device: str = "auto",
                   state: WeightState | None = None,
                   on_epoch_end: Callable[[WeightState], None] | None = None,
                   progress: bool = True) -> WeightResult:
    """SunGen weights ``(N,)`` for ``data`` (its ``targets`` are the inner loss's soft labels).

    The weighting model is ``weight.tam`` shaped by the training settings ``train`` (CLS pooling), its inputs
    cut to ``train.max_length`` tokens as in training."""
    base = TaskModel.from_config(train, labels, tam=config.tam, texts=data.texts, vectors=vectors, seed=seed,
                                 pooling="cls")
    device = pick_device(device)
    base.to(device)
    config = dataclasses.replace(config, inner_lr=config.resolved_inner_lr())
    return learn_sample_weights(base.fresh_copy, base.encode(data.texts, train.max_length),
                                torch.from_numpy(data.targets),
                                config=config, seed=seed, state=state, on_epoch_end=on_epoch_end,
                                progress=progress, device=device)


def select_top(weights: np.ndarray, k: int) -> np.ndarray:
    """Boolean mask of the ``k`` highest weights (ties keep the earlier row)."""
    mask = np.zeros(len(weights), dtype=bool)
    mask[np.argsort(-weights, kind="stable")[:k]] = True
    return mask


def weight_rows(rows: list[dict[str, Any]], output: Path, cfg: UniGenConfig, *, progress: bool = True,
                vectors: Any = None) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, Any]]:
    """SunGen weights for validated training rows; resumes from ``output/state.pt``.

    Returns ``(rows + weight/theta/keep, per-epoch history, summary)``; the state file is removed at the end.
    """
    data = parse_rows(rows, len(cfg.labels))
    output.mkdir(parents=True, exist_ok=True)
    state_path = output / "state.pt"
    state = None
    if state_path.is_file():
        saved = torch.load(state_path, weights_only=True)
        if saved["n"] != len(rows) or saved["seed"] != cfg.seed:
            raise StageError(
                f"{state_path} belongs to another run (rows or seed differ); remove it to start over"
            )
        state = WeightState(**saved["state"])

    def save_state(s: WeightState) -> None:
        atomic_torch_save({"n": len(rows), "seed": cfg.seed, "state": dataclasses.asdict(s)}, state_path)

    result = weight_samples(data, cfg.weight, cfg.labels, seed=cfg.seed, train=cfg.train, vectors=vectors,
                            device=cfg.device, state=state,
                            on_epoch_end=save_state, progress=progress)
    weights, theta = result.weights.numpy(), result.theta.numpy()
    selected = select_top(weights, cfg.weight.keep_count(len(weights)))
    out = [{**row, "weight": round(float(w), 6), "theta": round(float(t), 6), "keep": bool(k)}
           for row, w, t, k in zip(rows, weights, theta, selected)]
    summary = {"rows": len(rows), "selected": int(selected.sum()), "weight_mean": float(weights.mean()),
               "weight_min": float(weights.min()), "weight_max": float(weights.max()),
               "frac_above_bank_threshold": float((weights > cfg.train.bank_threshold).mean()),
               "outer_epochs": cfg.weight.outer_epochs}
    state_path.unlink(missing_ok=True)
    return out, result.history, summary


def _weight_into(stage: Stage, rows: list[dict[str, Any]], cfg: UniGenConfig, source: Path, progress: bool,
                 vectors: Any) -> Path:
    if not rows:
        raise StageError(f"{source}: no kept rows to weight; generate more or relax relabel.threshold")
    if cfg.weight.enabled:
        rows, history, summary = weight_rows(rows, stage.path, cfg, progress=progress, vectors=vectors)
        write_jsonl_atomic(stage.path / "history.jsonl", history)
    else:
        summary = {"rows": len(rows), "selected": len(rows)}
    stage.write_shard(0, rows)
    stage.finish(summary)
    return stage.path


def weight_stage(
    cfg: UniGenConfig,
    workdir: str | Path | None,
    relabel_dir: str | Path,
    *,
    progress: bool = True,
    path: str | Path | None = None,
    vectors: Any = None,
) -> Path:
    """Run (or resume, or skip) the weight stage of a finished relabel folder; returns the stage folder.

    The folder is ``<workdir>/03_weight/<fingerprint>``, or exactly ``path``.
    """
    upstream = {"relabel": Stage.load(relabel_dir, "relabel").fingerprint}
    stage = open_stage(
        "weight", weight_settings(cfg), workdir=workdir, path=path, upstream=upstream, seed=cfg.seed
    )
    if stage.complete:
        return stage.path
    rows = training_rows(iter_stage_rows(relabel_dir, "relabel"), cfg.relabel.mode)
    return _weight_into(stage, rows, cfg, Path(relabel_dir), progress, vectors)


def weight_file(data_path: str | Path, cfg: UniGenConfig, *, workdir: str | Path | None = None,
                path: str | Path | None = None, progress: bool = True, vectors: Any = None) -> Path:
    """The weight stage for a JSONL file of training rows (rows with ``keep`` false are skipped)."""
    data_path = Path(data_path)
    read_training_rows(data_path, len(cfg.labels))  # validates: errors name file:line
    upstream = {"data": file_digest(data_path)}
    stage = open_stage(
        "weight", weight_settings(cfg), workdir=workdir, path=path, upstream=upstream, seed=cfg.seed
    )
    if stage.complete:
        return stage.path
    rows = [row for _, row in iter_jsonl(data_path) if row.get("keep", True)]
    return _weight_into(stage, rows, cfg, data_path, progress, vectors)
