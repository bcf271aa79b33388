"""Task-model training: soft-label CE, supervised contrast and a denoising memory bank (docs/method.md §6).

Per step, for a batch ``B`` with targets ``t`` (soft relabel probabilities, or one-hot with
``targets=hard``), hard labels ``y = argmax t`` and optional SunGen weights ``w``::

    L = CE + alpha * L_SCL
    CE = mean_i  [w_i] * (-sum_c t_ic log softmax(f(x_i))_c)      # w_i only with train.weight_ce
    L_SCL = SupCon(z_B, y_B; contrast set = z_B (online) U bank (momentum features))

After the loss the momentum encoder's features of the batch enter the bank (FIFO, ``bank_size``), but
only rows with ``w_i > T_MB`` (the denoising gate; all rows without weights or with ``denoise_bank``
off). Then Adam steps (grad-norm clip) and the momentum encoder is updated,
``theta_k <- m theta_k + (1 - m) theta_q``. ``scl_weight = 0`` drops SCL and the momentum encoder.
``code_faithful`` reproduces the paper code (docs/method.md §9, SCL): the bank is updated with the batch
*before* the loss (first batch ungated), the code's SCL masks, and an independently initialised
momentum model.

Model selection: ``valid_fraction`` of the rows (seeded split) is held out; after every epoch the
accuracy against hard labels is measured and the best epoch's weights are returned. With
``average_from = f`` the returned model is instead the uniform average of the weights after every
optimiser step ``s > round(f * S)`` of the ``S`` steps (stochastic weight averaging; dense averaging
as in SWAD, Cha et al. 2021, which finds flatter minima that transfer better across domains)::

    theta_avg = 1 / n * sum_{s > round(f S)} theta_s,   kept as avg_n = avg_{n-1} + (theta_n - avg_{n-1}) / n

Speed: with ``precision`` bf16 (``auto``: transformers on a device with native bf16) the forward passes
run under bfloat16 autocast while weights, Adam's moments and the losses stay float32; with
``group_by_length`` (off by default: it cost MPNet-base 1.3-1.5 points, results/main_run.md) each epoch's
shuffled order is cut into chunks of 50 batches, each chunk sorted by
token length and cut into batches, and the batches are shuffled again (so a step pads to a similar
length instead of the longest of 32 random rows).

Determinism and resuming: every random draw of epoch ``e`` (shuffle, dropout) comes from ``(seed, e)``
inside a forked RNG, so a checkpoint (model, momentum model, optimiser, memory bank, step, best-so-far,
history) written atomically to ``workdir/checkpoint.pt`` after every epoch but the last fully determines the
rest of the run: a re-run with the same workdir continues after the last finished epoch and ends with
exactly the result of an uninterrupted run. The best epoch's weights are stored only when they are not the
checkpoint's current weights, and nothing is written after the last epoch (the caller saves the model;
``final_checkpoint`` writes it too), so a transformer run of ``E`` epochs writes ``E - 1`` checkpoints of
the model, the momentum model and the optimiser. The stage runner (``04_train`` folders) is
:mod:`unigen.tam.stage`.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from unigen.config import TrainConfig, fingerprint
from unigen.console import progress_bar
from unigen.errors import StageError
from unigen.files import atomic_torch_save, write_jsonl_atomic
from unigen.registry import pick_device
from unigen.seeds import epoch_seed, split_rng
from unigen.tam.autocast import bf16_by_default
from unigen.tam.losses import soft_cross_entropy, supervised_contrastive_loss
from unigen.tam.lstm import Vectors
from unigen.tam.memory import MemoryBank, gate_mask, make_momentum_copy, momentum_update
from unigen.tam.model import TaskModel
from unigen.tam.training_data import TrainingData, as_training_data

__all__ = ["TrainResult", "split_indices", "train_task_model"]

CHECKPOINT_NAME = "checkpoint.pt"
METRICS_NAME = "metrics.jsonl"
CHECKPOINT_FORMAT = 2
#: batches per chunk that ``group_by_length`` sorts by token length
LENGTH_GROUP_BATCHES = 50


def training_autocast(config: TrainConfig, device: torch.device) -> bool:
    """Whether the forward passes run under bf16 autocast (``train.precision``; ``auto``: a transformer
    on a device with native bf16)."""
    if config.precision == "auto":
        return bf16_by_default(config.tam, str(device))
    return config.precision == "bf16"


def length_grouped_order(order: torch.Tensor, lengths: torch.Tensor, batch_size: int,
                         generator: torch.Generator,
                         group_batches: int = LENGTH_GROUP_BATCHES) -> torch.Tensor:
    """``order`` (a shuffled permutation) rearranged so that each run of ``batch_size`` rows has similar
    ``lengths``: chunks of ``group_batches * batch_size`` rows are sorted by length (longest first),
    cut into batches, and the batches of the whole epoch are shuffled with ``generator``.

    Every row appears once; the one short batch, if any (from the last chunk), stays last, so slicing
    the result every ``batch_size`` rows gives exactly these batches.
    """
    chunk = batch_size * group_batches
    batches: list[torch.Tensor] = []
    for start in range(0, len(order), chunk):
        part = order[start:start + chunk]
        part = part[torch.argsort(lengths[part], descending=True, stable=True)]
        batches.extend(part[i:i + batch_size] for i in range(0, len(part), batch_size))
    short = [batches.pop()] if batches and len(batches[-1]) < batch_size else []
    shuffled = torch.randperm(len(batches), generator=generator).tolist()
    return torch.cat([batches[i] for i in shuffled] + short) if batches or short else order


@dataclass
class TrainResult:
    """The best-epoch model (eval mode), one metrics dict per finished epoch, and the chosen epoch.

    ``completed`` is false when ``max_epochs_this_run`` stopped the run early (resume it later).
    ``averaged``: the model is the weight average (``train.average_from``); ``best_epoch`` is then the
    last epoch and ``best_valid_acc`` the average's synthetic validation accuracy.
    """

    model: TaskModel
    history: list[dict[str, float]]
    best_epoch: int
    best_valid_acc: float
    completed: bool = True
    averaged: bool = False
    model_bf16: bool = False  # the forward passes ran under bf16 autocast (``train.precision``)

    @property
    def precision(self) -> str:
        """``bf16`` or ``fp32``: what the training record says ``train.precision`` resolved to."""
        return "bf16" if self.model_bf16 else "fp32"


def split_indices(n: int, valid_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded ``(train, valid)`` index split; ``round(n * valid_fraction)`` rows (at least 1) are held out."""
    if n < 2:
        raise ValueError(f"need at least 2 rows to hold out a validation split, got {n}")
    n_valid = min(n - 1, max(1, round(n * valid_fraction)))
    perm = split_rng(seed).permutation(n)
    return np.sort(perm[n_valid:]), np.sort(perm[:n_valid])


def _batch(
    inputs: dict[str, torch.Tensor], idx: torch.Tensor, device: torch.device
) -> dict[str, torch.Tensor]:
    """Rows ``idx`` of the pre-tokenised inputs, trimmed to the batch's longest row, on ``device``."""
    mask = inputs["attention_mask"][idx]
    width = max(1, int(mask.sum(dim=1).max()))
    return {
        "input_ids": inputs["input_ids"][idx, :width].to(device),
        "attention_mask": mask[:, :width].to(device),
    }


@torch.no_grad()
def _accuracy(
    model: TaskModel, inputs: dict[str, torch.Tensor], labels: np.ndarray, batch_size: int,
    autocast: bool = False,
) -> float:
    """Accuracy of ``argmax logits`` against integer ``labels`` (eval mode, mode restored after)."""
    was_training = model.training
    model.eval()
    correct = 0
    for start in range(0, len(labels), batch_size):
        idx = torch.arange(start, min(start + batch_size, len(labels)))
        with torch.autocast(model.device.type, dtype=torch.bfloat16, enabled=autocast):
            logits = model(**_batch(inputs, idx, model.device)).logits
        pred = logits.float().argmax(dim=-1).cpu().numpy()
        correct += int((pred == labels[start:start + batch_size]).sum())
    model.train(was_training)
    return correct / max(1, len(labels))


class _WeightAverage:
    """Uniform running mean of a model's floating-point weights (module docstring)."""

    def __init__(self) -> None:
        self.count = 0
        self.state: dict[str, torch.Tensor] | None = None

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        self.count += 1
        current = model.state_dict()
        if self.state is None:
            self.state = {k: v.detach().clone() for k, v in current.items()}
            return
        for key, value in current.items():
            if value.is_floating_point():
                self.state[key].add_(value - self.state[key], alpha=1.0 / self.count)

    def state_dict(self) -> dict[str, Any]:
        return {"count": self.count, "state": None if self.state is None else _cpu(self.state)}

    def load_state_dict(self, saved: dict[str, Any], device: torch.device) -> None:
        self.count = int(saved["count"])
        self.state = None if saved["state"] is None else {k: v.to(device) for k, v in saved["state"].items()}


class _Loop:
    """The mutable state of one run: online model, momentum model, optimiser, memory bank, step counter."""

    def __init__(self, model: TaskModel, config: TrainConfig, *, weight_ce: bool, seed: int,
                 total_steps: int) -> None:
        self.model, self.config, self.weight_ce = model, config, weight_ce
        self.device = model.device
        self.autocast = training_autocast(config, self.device)
        self.momentum: TaskModel | None = None
        if config.scl_weight > 0:
            self.momentum = make_momentum_copy(model)
            if config.code_faithful:
                with torch.random.fork_rng(devices=[]):
                    torch.manual_seed(epoch_seed(seed, 0, 3))
                    self.momentum.reinitialise_heads()
            self.momentum.train()
        params = [p for p in model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.Adam(params, lr=config.resolved_lr(), weight_decay=0.0)
        self.bank = MemoryBank(config.bank_size, config.projection_dim, device=self.device)
        self.step_count = 0
        self.total_steps = total_steps
        self.average_start = config.average_start(total_steps)
        self.average = _WeightAverage() if self.average_start is not None else None
        self._set_lr()

    def _set_lr(self) -> None:
        """The scheduled lr of the next step (``TrainConfig.lr_factor``; a pure function of the step)."""
        lr = self.config.resolved_lr() * self.config.lr_factor(self.step_count, self.total_steps)
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    def _scl(self, batch: dict[str, torch.Tensor], features: torch.Tensor, hard: torch.Tensor,
             weights: torch.Tensor | None) -> torch.Tensor:
        """The contrastive term; updates the bank (before the loss only in code-faithful mode)."""
        cfg = self.config
        with torch.no_grad(), self._autocast():
            keys = self.momentum(**batch).features.float()
        gated = weights if (cfg.denoise_bank and weights is not None) else None
        keep = gate_mask(gated, cfg.bank_threshold, len(hard))
        if cfg.code_faithful:
            self.bank.push(keys, hard, None if self.step_count == 0 else keep)
            return supervised_contrastive_loss(features, hard, self.bank.features, self.bank.labels,
                                               temperature=cfg.scl_temperature, code_faithful=True)
        loss = supervised_contrastive_loss(features, hard, self.bank.features, self.bank.labels,
                                           temperature=cfg.scl_temperature)
        self.bank.push(keys, hard, keep)
        return loss

    def step(self, batch: dict[str, torch.Tensor], targets: torch.Tensor, hard: torch.Tensor,
             weights: torch.Tensor | None) -> tuple[float, float, float]:
        """One optimiser step; returns ``(loss, ce, scl)``."""
        with self._autocast():
            out = self.model(**batch)
        logits, features = out.logits.float(), out.features.float()
        ce = soft_cross_entropy(logits, targets, weights if self.weight_ce else None)
        scl = self._scl(batch, features, hard, weights) if self.momentum is not None else ce.new_zeros(())
        loss = ce + self.config.scl_weight * scl
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.clip)
        self.optimizer.step()
        self.step_count += 1
        self._set_lr()
        if self.momentum is not None:
            momentum_update(self.model, self.momentum, self.config.momentum)
        if self.average is not None and self.step_count > self.average_start:
            self.average.update(self.model)
        return loss.item(), ce.item(), scl.item()

    def _autocast(self) -> torch.autocast:
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.autocast)

    def state_dict(self) -> dict[str, Any]:
        return {
            "model": _cpu(self.model.state_dict()),
            "momentum": None if self.momentum is None else _cpu(self.momentum.state_dict()),
            "optimizer": self.optimizer.state_dict(),
            "bank": self.bank.state_dict(),
            "step": self.step_count,
            "average": None if self.average is None else self.average.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        if self.momentum is not None:
            self.momentum.load_state_dict(state["momentum"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.bank.load_state_dict(state["bank"])
        self.step_count = int(state["step"])
        if self.average is not None:
            self.average.load_state_dict(state["average"], self.device)
        self._set_lr()


def state_digest(model: torch.nn.Module) -> str:
    """sha256 of a model's weights (names, shapes and bytes): the identity of a warm start."""
    import hashlib

    h = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        t = tensor.detach().cpu().contiguous()
        h.update(f"{name}:{tuple(t.shape)}:{t.dtype}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def _cpu(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone() for k, v in state.items()}


def _run_epoch(loop: _Loop, inputs: dict[str, torch.Tensor], data: TrainingData, *, epoch: int,
               seed: int, progress: bool, desc: str) -> dict[str, float]:
    """One pass over the training rows in a seeded order; returns mean loss terms and throughput."""
    device, cfg = loop.device, loop.config
    targets_np = np.eye(data.num_labels, dtype=np.float32)[data.hard_labels()] if cfg.targets == "hard" \
        else data.targets
    targets = torch.from_numpy(targets_np)
    hard = torch.from_numpy(data.hard_labels())
    weights = None if data.weights is None else torch.from_numpy(data.weights)
    generator = torch.Generator().manual_seed(epoch_seed(seed, epoch, 0))
    order = torch.randperm(len(data), generator=generator)
    if cfg.group_by_length:
        order = length_grouped_order(order, inputs["attention_mask"].sum(dim=1), cfg.batch_size, generator)
    sums = np.zeros(3)
    tic = time.perf_counter()
    loop.model.train()
    with progress_bar(len(data), desc, progress, leave=False) as bar:
        for start in range(0, len(order), cfg.batch_size):
            idx = order[start:start + cfg.batch_size]
            terms = loop.step(_batch(inputs, idx, device), targets[idx].to(device), hard[idx].to(device),
                              None if weights is None else weights[idx].to(device))
            sums += np.array(terms) * len(idx)
            bar.update(len(idx))
            bar.set_postfix(loss=f"{terms[0]:.4f}")
    seconds = time.perf_counter() - tic
    loss, ce, scl = (sums / len(data)).tolist()
    return {"loss": loss, "ce": ce, "scl": scl, "seconds": seconds, "samples_per_s": len(data) / seconds}


def _save_checkpoint(path: Path, run_id: str, loop: _Loop, state: dict[str, Any]) -> None:
    """Write what resuming needs; the best weights only when they are not the current ones."""
    best_is_current = state["best_epoch"] == state["epoch"]
    saved_state = {**state, "best_state": None if best_is_current else state["best_state"]}
    atomic_torch_save({"format": CHECKPOINT_FORMAT, "run_id": run_id, "loop": loop.state_dict(),
                       "state": saved_state}, path)


def _load_checkpoint(path: Path, run_id: str) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    state = torch.load(path, map_location="cpu", weights_only=True)
    if state.get("format") != CHECKPOINT_FORMAT or state.get("run_id") != run_id:
        raise StageError(f"{path} belongs to a different training run (config, labels, seed or data "
                         f"differ): use another output folder or delete it")
    return state


def _initial_model(config: TrainConfig, labels: Sequence[str], train: TrainingData, vectors: Vectors | None,
                   seed: int, init_model: TaskModel | None) -> TaskModel:
    """A new model shaped by ``config``, or a copy of ``init_model`` (a warm start)."""
    if init_model is None:
        return TaskModel.from_config(config, labels, texts=train.texts, vectors=vectors, seed=seed)
    if tuple(init_model.labels) != tuple(labels):
        raise ValueError(f"init_model has labels {init_model.labels}, not {tuple(labels)}")
    return init_model.fresh_copy().cpu()


def train_task_model(data: Any, config: TrainConfig, labels: Sequence[str], *, seed: int,
                     workdir: str | Path | None = None, progress: bool = True, device: str = "auto",
                     vectors: Vectors | None = None, max_epochs_this_run: int | None = None,
                     final_checkpoint: bool = False, init_model: TaskModel | None = None) -> TrainResult:
    """Train a task model on synthetic rows and return the best epoch's model (module docstring).

    Args:
        data: :class:`~unigen.tam.training_data.TrainingData`, row mappings (``text`` + ``probs`` or
            ``label``,
            optional ``weight``/``keep``), or ``(texts, targets (N, C), weights (N,) | None)``.
        config: the training settings (``config.tam`` picks the encoder).
        labels: label names, index = class id.
        seed: seeds the split, the initialisation and every epoch's shuffle and dropout.
        workdir: folder for ``checkpoint.pt`` and ``metrics.jsonl``; an existing checkpoint of the
            same run is resumed. None: no checkpoints.
        progress: show a tqdm bar per epoch.
        device: ``auto`` | ``cpu`` | ``cuda`` | ``cuda:N``.
        vectors: LSTM word vectors ``(words, array)``; default the embedded GloVe-6B-50d.
        max_epochs_this_run: stop after this many epochs in this call (the run can be resumed).
        final_checkpoint: also write the checkpoint after the last epoch (kept for inspection or for
            continuing with more epochs; off by default, since the caller saves the model).
        init_model: warm start: train a copy of this (already trained) task model instead of a new one
            (``unigen adapt``); ``config.tam`` then only picks the lr/epoch defaults and the precision, and
            the copy's weights enter the checkpoints' run id. None (the default): a new model.

    Returns:
        :class:`TrainResult`.
    """
    data = as_training_data(data, len(labels))
    train_idx, valid_idx = split_indices(len(data), config.valid_fraction, seed)
    train, valid = data.subset(train_idx), data.subset(valid_idx)
    model = _initial_model(config, labels, train, vectors, seed, init_model).to(pick_device(device))
    epochs = config.planned_epochs(len(train))
    steps = epochs * config.steps_per_epoch(len(train))
    loop = _Loop(model, config, weight_ce=config.weight_ce, seed=seed, total_steps=steps)
    train_inputs = model.encode(train.texts, config.max_length)
    valid_inputs = model.encode(valid.texts, config.max_length)
    valid_labels = valid.hard_labels()

    run_id = fingerprint(config, {"labels": list(labels), "seed": seed, "data": data.digest()},
                         *([] if init_model is None else [{"init": state_digest(init_model)}]))
    ckpt_path = metrics_path = None
    state: dict[str, Any] = {"epoch": 0, "history": [], "best_acc": -1.0, "best_epoch": 0, "best_state": None}
    if workdir is not None:
        Path(workdir).mkdir(parents=True, exist_ok=True)
        ckpt_path, metrics_path = Path(workdir) / CHECKPOINT_NAME, Path(workdir) / METRICS_NAME
        saved = _load_checkpoint(ckpt_path, run_id)
        if saved is not None:
            loop.load_state_dict(saved["loop"])
            state = saved["state"]
            if state["best_state"] is None and state["best_epoch"] == state["epoch"]:
                state["best_state"] = _cpu(model.state_dict())

    ran = 0
    for epoch in range(state["epoch"], epochs):
        if max_epochs_this_run is not None and ran >= max_epochs_this_run:
            break
        cuda = [model.device.index or 0] if model.device.type == "cuda" else []
        with torch.random.fork_rng(devices=cuda):
            torch.manual_seed(epoch_seed(seed, epoch, 1))
            metrics = _run_epoch(loop, train_inputs, train, epoch=epoch, seed=seed, progress=progress,
                                 desc=f"train {config.tam} epoch {epoch + 1}/{epochs}")
        acc = _accuracy(model, valid_inputs, valid_labels, config.batch_size, loop.autocast)
        state["history"].append(
            {"epoch": epoch + 1, **metrics, "valid_acc": acc, "bank_size": len(loop.bank)}
        )
        if acc > state["best_acc"]:
            state.update(best_acc=acc, best_epoch=epoch + 1, best_state=_cpu(model.state_dict()))
        state["epoch"] = epoch + 1
        ran += 1
        if ckpt_path is not None:
            if state["epoch"] < epochs or final_checkpoint:
                _save_checkpoint(ckpt_path, run_id, loop, state)
            write_jsonl_atomic(metrics_path, state["history"])

    completed = state["epoch"] >= epochs
    if completed and loop.average is not None and loop.average.state is not None:
        model.load_state_dict(loop.average.state)
        acc = _accuracy(model, valid_inputs, valid_labels, config.batch_size, loop.autocast)
        model.eval()
        return TrainResult(model, state["history"], state["epoch"], acc, completed=True, averaged=True,
                           model_bf16=loop.autocast)
    if state["best_state"] is not None:
        model.load_state_dict(state["best_state"])
    model.eval()
    return TrainResult(model, state["history"], state["best_epoch"], state["best_acc"], completed=completed,
                       model_bf16=loop.autocast)
