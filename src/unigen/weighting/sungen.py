"""SunGen bi-level sample weighting (docs/method.md §5), model-agnostic core.

Per-sample weights ``w = sigmoid(theta)``, ``theta in R^N`` (initialised to ``init_theta``). Each outer
epoch ``t`` (docs/method.md §5.2):

1. ``w = sigmoid(theta)``, detached.
2. Inner: ``phi_hat`` = a fresh ``make_model()`` (phi_0) trained ``inner_epochs`` over all N rows
   (seeded shuffle, ``batch_size``) with Adam(``inner_lr``) on ``mean_{i in B} w_i * CE_i``, where
   ``CE_i = -sum_c t_ic log softmax(f(x_i))_c`` is the soft-label cross-entropy.
3. Outer gradient ``g = sum_batches grad_phi R_B(phi_hat)`` on a validation subset of
   ``min(valid_size, N)`` train rows re-drawn every epoch. ``R_B`` = mean over the batch rows with
   ``w_i >= kappa`` (kappa = the k-th largest weight, ``k = floor((1 - drop_lowest) N)``) of the reverse
   cross-entropy ``RCE_i = -sum_c p_ic log q_ic``, ``p = softmax(f(x_i))``,
   ``q = softmax(A onehot(argmax t_i))``. (The paper code averages over rows *and* classes, i.e. R/C;
   Adam on theta makes that constant factor immaterial.) With ``balance_classes`` (off by default = the
   paper; an improvement measured below) row j's RCE is scaled by ``K / (C' K_c)`` for its label c, where K
   counts the kept validation rows, K_c those of class c and C' the classes present, so each class
   carries the same total weight; on class-balanced kept rows every factor is exactly 1, which is the
   paper's loss.
4. One-step hypergradient, see :func:`hypergradient` (``hypergradient="double_backward"``, the paper
   code's route) or :func:`hypergradient_central` (``"central"``, the default: the same quantity from two
   forward passes, ~3x faster).
5. ``theta.grad = dtheta`` (assigned), ``clip_grad_norm_(theta, clip)``, Adam(``outer_lr``) step.

Small data: why ``balance_classes``. With a few hundred rows and the LSTM task model, the paper's
row-mean outer loss splits the weights by *noisy class* (e.g. 0.1 vs 0.95), not by noise. The cause:

* After one short inner epoch the LSTM model's logits are mostly a shared, input-independent term:
  the head's LayerNorm features of different texts have mean cosine ~0.9 (the untrained LSTM's output
  is small next to the projection bias), so the classifier behaves like a bias, and its Adam steps
  swing the prediction of all rows at once (inner lr >= 1e-2: accuracy ~0.5, one class predicted).
* The hypergradient is then ``dtheta_i ~ (p_i - y_i) u`` with u shared by all rows. For the RCE loss
  at a near-constant prediction, u is proportional to the difference of the kept validation rows per
  class, so all rows of one class get one sign, favouring the class with more kept rows. Measured:
  ~95% of ``<grad CE_i, g>`` comes from the classifier weights, and the between-class part is 1.4-8x
  the within-class part, although the within-class part does rank clean rows above flipped ones.
* Adam on theta is per coordinate, so a consistently signed term moves a whole class at the full
  outer lr however small it is; and after the first step the 10% lowest weights (all in the minority
  class) leave the outer loss, which enlarges the imbalance: positive feedback. In every measured run
  the noisy-majority class won (8 of 8 checked); with equal class counts and ``drop_lowest=0`` the
  split mostly disappears.

Balancing the classes of the outer loss removes both the count term and the feedback. Measured on 30%
flipped template sentences (clean-minus-flipped mean weight; noise rate of the top 70%, input 0.30;
before -> after, 4-16 seeds): 400 rows, GloVe, default config: -0.01 -> 0.05; 0.38 -> 0.20. Hidden 16,
outer lr 0.3, 20 epochs, vectors with polarity on one axis: 400 rows 0.03 -> 0.54; 0.32 -> 0.10, 120
rows -0.03 -> 0.46; 0.32 -> 0.12. Random vectors: 400 rows -0.01 -> 0.24; 0.33 -> 0.21, 2,000 rows
(outer lr 0.1) 0.00 -> 0.21; 0.27 -> 0.16. Limitation: when the inner model can hardly learn (about
100 rows with uninformative vectors, a handful of inner steps) the weights carry little signal either
way (120 rows, random vectors: gap 0.15, top-70% noise 0.24; 0.08 and 0.26 at inner lr 0.02).
The MLP/blob case is unchanged.

Determinism and resuming: every random draw of epoch ``t`` (inner shuffle, validation subset, the global
torch RNG used by dropout, forked so the caller's RNG is untouched) is derived from ``(seed, t)``, so a
:class:`WeightState` (theta, Adam state, completed epochs, seed) fully determines the rest of a run.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from copy import deepcopy
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from unigen.config import WeightConfig
from unigen.console import progress_bar
from unigen.seeds import epoch_seed
from unigen.tam.losses import reverse_cross_entropy, soft_cross_entropy_per_sample

Inputs = dict[str, Tensor]
_INNER, _VALID, _TORCH = 0, 1, 2  # random streams per epoch


@dataclass
class WeightState:
    """Everything needed to resume after ``epoch`` completed outer epochs (CPU tensors, torch.save-able).

    The RNG state is implied: all draws of epoch t come from ``(seed, t)``.
    """

    theta: Tensor
    optimizer: dict[str, Any]
    epoch: int
    seed: int
    history: list[dict[str, float]] = field(default_factory=list)


@dataclass
class WeightResult:
    """``theta``: final raw logits (N,); ``weights`` = sigmoid(theta); ``history``: one dict per epoch."""

    theta: Tensor
    weights: Tensor
    history: list[dict[str, float]]

    def top_k(self, k: int | None) -> Tensor:
        """Indices of the k highest-weighted samples (all N, sorted, if k is None)."""
        return top_k_indices(self.weights, len(self.weights) if k is None else k)


def top_k_indices(weights: Tensor, k: int) -> Tensor:
    """Indices of the ``k`` largest weights, descending; ties keep their original order."""
    if weights.dim() != 1 or k < 0:
        raise ValueError(f"need 1-D weights and k >= 0; got shape {tuple(weights.shape)}, k={k}")
    return torch.sort(weights, descending=True, stable=True).indices[:k]


def _generator(seed: int, epoch: int, stream: int) -> torch.Generator:
    return torch.Generator().manual_seed(epoch_seed(seed, epoch, stream))


def _logits(model: nn.Module, batch: Inputs) -> Tensor:
    out = model(**batch)
    return out.logits if hasattr(out, "logits") else out


def _batches(inputs: Inputs, order: Tensor, batch_size: int, device: torch.device) -> Iterator[tuple]:
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        yield idx, {k: v[idx].to(device) for k, v in inputs.items()}


def _params(model: nn.Module) -> list[Tensor]:
    return [p for p in model.parameters() if p.requires_grad]


def weight_threshold(weights: Tensor, drop_lowest: float) -> Tensor:
    """kappa = the k-th largest weight, ``k = max(1, floor((1 - drop_lowest) N))``; rows ``w >= kappa``
    count."""
    k = max(1, math.floor((1.0 - drop_lowest) * len(weights) + 1e-9))
    return torch.topk(weights, k).values[-1]


def train_inner(model: nn.Module, inputs: Inputs, targets: Tensor, weights: Tensor, *, lr: float,
                epochs: int, batch_size: int, generator: torch.Generator) -> float:
    """Train ``model`` in place with Adam(lr) on ``mean_B(w_i CE_i)``; returns the last batch loss."""
    device = weights.device
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    loss = torch.tensor(float("nan"))
    for _ in range(epochs):
        order = torch.randperm(len(targets), generator=generator)
        for idx, batch in _batches(inputs, order, batch_size, device):
            loss = (
                weights[idx.to(device)]
                * soft_cross_entropy_per_sample(_logits(model, batch), targets[idx].to(device))
            ).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return float(loss.detach())


def class_balance_factors(labels: Tensor, keep: Tensor, num_classes: int) -> Tensor:
    """Per-class factors ``a_c = K / (C' K_c)`` (``K`` kept rows, ``K_c`` of class c, ``C'`` classes present).

    Every present class then carries the same total weight ``K / C'`` and the factors average 1 over the
    kept rows, so they are all exactly 1 when the kept rows are class-balanced. Absent classes get 0.
    """
    counts = torch.bincount(labels[keep], minlength=num_classes).to(torch.float64)
    present = counts > 0
    factors = torch.where(
        present, counts.sum() / (present.sum() * counts.clamp_min(1)), torch.zeros_like(counts)
    )
    return factors.to(torch.get_default_dtype())


def outer_gradient(model: nn.Module, inputs: Inputs, targets: Tensor, weights: Tensor, valid_idx: Tensor,
                   *, robust_a: float, drop_lowest: float, batch_size: int,
                   balance_classes: bool = False) -> tuple[list[Tensor], float]:
    """``g = sum_B grad_phi R_B`` over validation batches (rows ``valid_idx``) and the mean kept-row RCE.

    Rows whose weight is below :func:`weight_threshold` are ignored; a batch with no kept row adds 0.
    With ``balance_classes``, row j's RCE is multiplied by :func:`class_balance_factors` of its (hard)
    label, computed over all kept rows of ``valid_idx``, before the batch mean. The returned loss is the
    plain mean kept-row RCE either way. ``g`` is aligned with the model's trainable parameters.
    """
    device = weights.device
    params = _params(model)
    g = [torch.zeros_like(p) for p in params]
    kappa = weight_threshold(weights, drop_lowest)
    factors = None
    if balance_classes:
        valid = valid_idx.to(device)
        factors = class_balance_factors(targets[valid].to(device).argmax(-1), weights[valid] >= kappa,
                                        targets.shape[1]).to(device=device, dtype=weights.dtype)
    total, kept = 0.0, 0
    for idx, batch in _batches(inputs, valid_idx, batch_size, device):
        keep = weights[idx.to(device)] >= kappa
        if not bool(keep.any()):
            continue
        labels = targets[idx].to(device).argmax(-1)
        rce = reverse_cross_entropy(_logits(model, batch), labels, a=robust_a)[keep]
        loss = rce.mean() if factors is None else (factors[labels[keep]] * rce).mean()
        grads = torch.autograd.grad(loss, params, allow_unused=True)
        for acc, gr in zip(g, grads):
            if gr is not None:
                acc += gr
        total, kept = total + float(rce.detach().sum()), kept + int(keep.sum())
    return g, total / max(kept, 1)


def hypergradient(model: nn.Module, inputs: Inputs, targets: Tensor, theta: Tensor, g: list[Tensor], *,
                  inner_lr: float, batch_size: int) -> Tensor:
    """One-step unrolled hypergradient ``dtheta`` (N,), computed by the create_graph (double-backward) route.

    For each train batch B (in order): ``L_B = sum_{i in B} sigmoid(theta_i) CE_i(phi_hat) / S`` with
    ``S = sum_all sigmoid(theta)`` detached, ``phi' = phi_hat - inner_lr grad_phi L_B`` and
    ``dtheta_B = d<phi', g>/dtheta_B``. Equivalently, per sample,
    ``dtheta_i = -inner_lr sigmoid(theta_i)(1 - sigmoid(theta_i)) / S <grad_phi CE_i(phi_hat), g>``.
    ``g`` is aligned with the model's trainable parameters; cuDNN is off (no double backward for RNNs).
    """
    n, params = _check_hypergradient_inputs(model, inputs, targets, theta, g)
    theta = theta.detach()
    total = torch.sigmoid(theta).sum()
    dtheta = torch.zeros_like(theta)
    with torch.backends.cudnn.flags(enabled=False):
        for idx, batch in _batches(inputs, torch.arange(n), batch_size, theta.device):
            idx = idx.to(theta.device)
            theta_b = theta[idx].requires_grad_(True)
            ce = soft_cross_entropy_per_sample(_logits(model, batch), targets[idx].to(theta.device))
            loss = (torch.sigmoid(theta_b) * ce).sum() / total
            grads = torch.autograd.grad(loss, params, create_graph=True, allow_unused=True)
            dot = sum((gr * gi).sum() for gr, gi in zip(grads, g) if gr is not None)
            if isinstance(dot, Tensor) and dot.requires_grad:
                dtheta[idx] = -inner_lr * torch.autograd.grad(dot, theta_b)[0]
    return dtheta


def hypergradient_central(model: nn.Module, inputs: Inputs, targets: Tensor, theta: Tensor,
                          g: list[Tensor], *, inner_lr: float, batch_size: int = 256,
                          rel_step: float = 1e-5) -> Tensor:
    """The same ``dtheta`` as :func:`hypergradient`, from forward passes only (no double backward).

    ``<grad_phi CE_i(phi_hat), g>`` is the derivative of ``CE_i`` along ``g``, taken by central differences
    in float64 on a copy of the model:
    ``D_i = (CE_i(phi_hat + eps g) - CE_i(phi_hat - eps g)) / (2 eps)``, ``eps = rel_step |phi_hat| / |g|``
    (truncation error O(eps^2), rounding ~1e-16/eps relative), and
    ``dtheta_i = -inner_lr sigmoid(theta_i)(1 - sigmoid(theta_i)) / S * D_i``, ``S = sum sigmoid(theta)``.
    Two batched forward passes instead of a backward with ``create_graph`` and a second backward per batch:
    ~3x faster for the LSTM on CPU (2.4 s instead of 7.6 s on 1,568 rows), where packed sequences have no
    forward-mode AD. ``batch_size`` changes only the speed.
    """
    n, params = _check_hypergradient_inputs(model, inputs, targets, theta, g)
    device = theta.device
    g64 = [gi.detach().to(device=device, dtype=torch.float64) for gi in g]
    g_norm = float(torch.sqrt(sum((gi ** 2).sum() for gi in g64)))
    if g_norm == 0.0:
        return torch.zeros_like(theta)
    copy = deepcopy(model).to(torch.float64)
    copy_params = _params(copy)
    centre = [p.detach().clone() for p in copy_params]
    phi_norm = float(torch.sqrt(sum((p ** 2).sum() for p in centre)))
    eps = rel_step * max(phi_norm, 1.0) / g_norm
    targets64 = targets.to(device=device, dtype=torch.float64)

    def losses(sign: float) -> Tensor:
        with torch.no_grad():
            for p, c, gi in zip(copy_params, centre, g64):
                p.copy_(c + sign * eps * gi)
            out = torch.empty(n, dtype=torch.float64, device=device)
            for idx, batch in _batches(inputs, torch.arange(n), batch_size, device):
                idx = idx.to(device)
                batch = {k: v.double() if v.is_floating_point() else v for k, v in batch.items()}
                out[idx] = soft_cross_entropy_per_sample(_logits(copy, batch), targets64[idx])
        return out

    copy.train(model.training)
    cuda = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda):
        states = (torch.get_rng_state(), [torch.cuda.get_rng_state(d) for d in cuda])
        plus = losses(1.0)
        torch.set_rng_state(states[0])  # the same dropout masks on both sides
        for d, st in zip(cuda, states[1]):
            torch.cuda.set_rng_state(st, d)
        minus = losses(-1.0)
    directional = (plus - minus) / (2 * eps)
    s = torch.sigmoid(theta.detach().to(torch.float64))
    return (-inner_lr * s * (1 - s) / s.sum() * directional).to(theta.dtype)


def _check_hypergradient_inputs(model: nn.Module, inputs: Inputs, targets: Tensor, theta: Tensor,
                                g: list[Tensor]) -> tuple[int, list[Tensor]]:
    """``(N, trainable parameters)`` after checking that theta is (N,) and g matches the parameters."""
    n = _check_data(inputs, targets)
    if theta.shape != (n,):
        raise ValueError(f"theta must have shape ({n},); got {tuple(theta.shape)}")
    params = _params(model)
    if len(g) != len(params) or any(a.shape != b.shape for a, b in zip(g, params)):
        raise ValueError("g must match the model's trainable parameters in number and shapes")
    return n, params


def _check_data(inputs: Inputs, targets: Tensor) -> int:
    if not isinstance(inputs, dict) or not inputs:
        raise ValueError("inputs must be a non-empty dict of tensors")
    if targets.dim() != 2 or targets.shape[0] == 0 or targets.shape[1] < 2:
        raise ValueError(f"targets must have shape (N, C) with N >= 1, C >= 2; got {tuple(targets.shape)}")
    n = targets.shape[0]
    bad = {k: tuple(v.shape) for k, v in inputs.items() if not isinstance(v, Tensor) or v.dim() == 0
           or v.shape[0] != n}
    if bad:
        raise ValueError(f"every input needs first dimension N={n} (targets); got {bad}")
    return n


def _initial_state(n: int, config: WeightConfig, seed: int, device: torch.device,
                   state: WeightState | None) -> tuple[Tensor, torch.optim.Adam, int, list]:
    theta = torch.full((n,), float(config.init_theta), device=device)
    if state is not None:
        if state.theta.shape != (n,) or state.seed != seed:
            raise ValueError(f"state does not fit this run: theta {tuple(state.theta.shape)} vs ({n},), "
                             f"seed {state.seed} vs {seed}")
        theta = state.theta.detach().to(device=device, dtype=theta.dtype).clone()
    theta.requires_grad_(True)
    opt = torch.optim.Adam([theta], lr=config.outer_lr)
    if state is not None:
        opt.load_state_dict(state.optimizer)
        return theta, opt, state.epoch, list(state.history)
    return theta, opt, 0, []


def _outer_epoch(make_model: Callable[[], nn.Module], inputs: Inputs, targets: Tensor, theta: Tensor,
                 config: WeightConfig, seed: int, epoch: int, device: torch.device | None) -> dict:
    """Steps 1-4 for one epoch; returns the hypergradient and stats (runs under a seeded, forked RNG)."""
    n = len(targets)
    weights = torch.sigmoid(theta.detach())
    for attempt in range(3):  # the paper code redoes the inner loop if its loss is NaN
        torch.manual_seed(epoch_seed(seed, epoch, _TORCH + 10 * attempt))
        model = make_model()
        if device is not None:
            model = model.to(device)
        model.train()
        inner_loss = train_inner(model, inputs, targets, weights, lr=config.inner_lr,
                                 epochs=config.inner_epochs, batch_size=config.batch_size,
                                 generator=_generator(seed, epoch, _INNER + 10 * attempt))
        if math.isfinite(inner_loss):
            break
    valid_idx = torch.randperm(n, generator=_generator(seed, epoch, _VALID))[:min(config.valid_size, n)]
    g, outer_loss = outer_gradient(model, inputs, targets, weights, valid_idx, robust_a=config.robust_a,
                                   drop_lowest=config.drop_lowest, batch_size=config.batch_size,
                                   balance_classes=config.balance_classes)
    if config.hypergradient == "central":
        dtheta = hypergradient_central(model, inputs, targets, theta, g, inner_lr=config.inner_lr)
    else:
        dtheta = hypergradient(model, inputs, targets, theta, g, inner_lr=config.inner_lr,
                               batch_size=config.batch_size)
    return {"dtheta": dtheta, "inner_loss": inner_loss, "outer_loss": outer_loss}


def learn_sample_weights(make_model: Callable[[], nn.Module], inputs: Inputs, targets: Tensor, *,
                         config: WeightConfig, seed: int = 0, state: WeightState | None = None,
                         on_epoch_end: Callable[[WeightState], None] | None = None,
                         progress: bool = False, device: str | torch.device | None = None) -> WeightResult:
    """Run SunGen's outer loop (module docstring) for ``config.outer_epochs`` epochs.

    ``make_model()`` must return a fresh model with the same initial weights phi_0 on every call; its
    forward takes ``**batch`` and returns logits (B, C) or an object with ``.logits``. ``inputs`` are
    tensors with first dim N (moved to ``device`` batch by batch; default: the device of one extra
    ``make_model()``), ``targets`` (N, C) target distributions. ``state`` resumes a run (same seed and N);
    ``on_epoch_end(state)`` is called after every outer epoch. ``config.enabled``/``keep_top``/``tam``
    are the caller's business.
    """
    n = _check_data(inputs, targets)
    if device is None:
        with torch.random.fork_rng(devices=[]):
            device = next(make_model().parameters()).device
    device = torch.device(device)
    theta, opt, start, history = _initial_state(n, config, seed, device, state)
    targets = targets.to(device) if targets.is_floating_point() else targets.to(device).float()
    epochs = range(start, config.outer_epochs)
    if progress:
        epochs = progress_bar(config.outer_epochs, "sungen", progress, initial=start, unit="it",
                              iterable=epochs)
    for epoch in epochs:
        tic = time.perf_counter()
        cuda = [device.index or 0] if device.type == "cuda" else []
        with torch.random.fork_rng(devices=cuda):
            out = _outer_epoch(make_model, inputs, targets, theta, config, seed, epoch, device)
        theta.grad = out["dtheta"].to(theta.dtype)
        grad_norm = float(torch.nn.utils.clip_grad_norm_([theta], config.clip))
        opt.step()
        w = torch.sigmoid(theta.detach())
        history.append({"epoch": epoch + 1, "outer_loss": out["outer_loss"], "inner_loss": out["inner_loss"],
                        "grad_norm": grad_norm, "w_mean": float(w.mean()), "w_min": float(w.min()),
                        "w_max": float(w.max()), "w_std": float(w.std()) if n > 1 else 0.0,
                        "frac_above_0.8": float((w > 0.8).float().mean()),
                        "seconds": time.perf_counter() - tic})
        if progress:
            epochs.set_postfix(loss=f"{out['outer_loss']:.4f}", w=f"{history[-1]['w_mean']:.3f}")
        if on_epoch_end is not None:
            on_epoch_end(_snapshot(theta, opt, epoch + 1, seed, history))
    final = theta.detach().cpu().clone()
    return WeightResult(theta=final, weights=torch.sigmoid(final), history=history)


def _snapshot(theta: Tensor, opt: torch.optim.Optimizer, epoch: int, seed: int, history: list) -> WeightState:
    def cpu(x: Any) -> Any:
        if isinstance(x, Tensor):
            return x.detach().cpu().clone()
        if isinstance(x, dict):
            return {k: cpu(v) for k, v in x.items()}
        return [cpu(v) for v in x] if isinstance(x, list) else x
    return WeightState(theta=cpu(theta), optimizer=cpu(opt.state_dict()), epoch=epoch, seed=seed,
                       history=[dict(h) for h in history])
