"""Stage 3: SunGen sample weights for relabeled rows (method-spec section 4).

Core: :func:`weight_samples` builds the weighting task model (``weight.tam``, the LSTM by default: the
cheap choice on CPU), tokenises the texts once and runs :func:`unigen.weighting.learn_sample_weights`.

Runner: :func:`weight_file` reads relabeled JSONL rows (``text`` plus ``probs`` or ``label``; rows with
``keep`` false are skipped), and writes into a folder

* ``weighted.jsonl``: every kept input row plus ``weight`` (= sigmoid(theta)), ``theta`` and
  ``keep`` (true for the top ``weight.keep_top`` rows, or ``weight.keep_fraction`` of them), so
  ``unigen train --data DIR/weighted.jsonl`` trains on the selection with the weights gating the bank;
* ``history.jsonl``: per outer epoch, outer loss and weight statistics;
* ``state.pt``: the resumable state after every outer epoch (deleted when finished);
* ``summary.json``: counts and weight statistics.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from unigen.artifacts import write_jsonl_atomic
from unigen.config import UniGenConfig, WeightConfig
from unigen.data import DataError, iter_jsonl
from unigen.train_data import TrainingData, parse_rows, read_training_rows
from unigen.weighting import WeightResult, WeightState, learn_sample_weights


def resolved_inner_lr(config: WeightConfig) -> float:
    """``weight.inner_lr``, or 1e-3 for the LSTM and 2e-5 for transformers when unset."""
    if config.inner_lr is not None:
        return config.inner_lr
    return 1e-3 if config.tam == "lstm" else 2e-5


def weight_samples(data: TrainingData, config: WeightConfig, labels: Sequence[str], *, seed: int = 42,
                   max_length: int = 40, lstm_hidden: int = 256, projection_dim: int = 256,
                   vectors: Any = None, device: str = "auto", state: WeightState | None = None,
                   on_epoch_end: Callable[[WeightState], None] | None = None,
                   progress: bool = True) -> WeightResult:
    """SunGen weights ``(N,)`` for ``data`` (its ``targets`` are the inner loss's soft labels)."""
    from unigen.lm import pick_device
    from unigen.tam import TaskModel

    base = TaskModel.build(config.tam, labels, texts=data.texts, max_length=max_length,
                           projection_dim=projection_dim, lstm_hidden=lstm_hidden, vectors=vectors, seed=seed)
    device = pick_device(device)
    base.to(device)
    config = dataclasses.replace(config, inner_lr=resolved_inner_lr(config))
    return learn_sample_weights(base.fresh_copy, base.encode(data.texts), torch.from_numpy(data.targets),
                                config=config, seed=seed, state=state, on_epoch_end=on_epoch_end,
                                progress=progress, device=device)


def select_top(weights: np.ndarray, k: int) -> np.ndarray:
    """Boolean mask of the ``k`` highest weights (ties keep the earlier row)."""
    mask = np.zeros(len(weights), dtype=bool)
    mask[np.argsort(-weights, kind="stable")[:k]] = True
    return mask


def _kept_rows(path: Path) -> list[dict[str, Any]]:
    return [row for _, row in iter_jsonl(path) if row.get("keep", True)]


def _atomic_torch_save(obj: Any, path: Path) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


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
            raise DataError(f"{state_path} belongs to another run (rows or seed differ); remove it to start over")
        state = WeightState(**saved["state"])

    def save_state(s: WeightState) -> None:
        _atomic_torch_save({"n": len(rows), "seed": cfg.seed, "state": dataclasses.asdict(s)}, state_path)

    result = weight_samples(data, cfg.weight, cfg.labels, seed=cfg.seed, max_length=cfg.train.max_length,
                            lstm_hidden=cfg.train.lstm_hidden, projection_dim=cfg.train.projection_dim,
                            vectors=vectors, device=cfg.device, state=state,
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


def weight_file(data_path: str | Path, output: str | Path, cfg: UniGenConfig, *, progress: bool = True,
                vectors: Any = None) -> dict[str, Any]:
    """Weight the kept rows of ``data_path`` into ``output`` (see the module docstring)."""
    data_path, output = Path(data_path), Path(output)
    read_training_rows(data_path, len(cfg.labels))  # validates: errors name file:line
    out, history, summary = weight_rows(_kept_rows(data_path), output, cfg, progress=progress, vectors=vectors)
    write_jsonl_atomic(output / "weighted.jsonl", out)
    write_jsonl_atomic(output / "history.jsonl", history)
    (output / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary
