"""Tests for unigen.weighting.sungen (SunGen bi-level sample weighting)."""

from __future__ import annotations

import dataclasses
import math
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from unigen.config import WeightConfig
from unigen.tam.losses import reverse_cross_entropy, soft_cross_entropy_per_sample
from unigen.weighting.sungen import (
    WeightState,
    class_balance_factors,
    hypergradient,
    hypergradient_central,
    learn_sample_weights,
    outer_gradient,
    top_k_indices,
    weight_threshold,
)


class MLP(nn.Module):
    def __init__(self, d: int, hidden: int = 16, dropout: float = 0.0, as_object: bool = False):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(d, hidden), nn.Tanh(), nn.Dropout(dropout), nn.Linear(hidden, 2))
        self.as_object = as_object

    def forward(self, x):
        logits = self.net(x)
        return SimpleNamespace(logits=logits) if self.as_object else logits


def factory(init_seed: int, d: int, **kw):
    def make():  # fixed phi_0 on every call; the global RNG (used by dropout) is left as it was
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(init_seed)
            return MLP(d, **kw)
    return make


def noisy_blobs(seed: int, n: int = 400, d: int = 5, flip: float = 0.3):
    """Two Gaussian blobs (means +-2 on axis 0, unit variance); ``flip`` of the labels flipped."""
    gen = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 2
    means = torch.zeros(2, d)
    means[:, 0] = torch.tensor([-2.0, 2.0])
    x = means[y] + torch.randn(n, d, generator=gen)
    flipped = torch.zeros(n, dtype=torch.bool)
    flipped[torch.randperm(n, generator=gen)[: int(flip * n)]] = True
    targets = nn.functional.one_hot(torch.where(flipped, 1 - y, y), 2).float()
    return x, targets, flipped


# Measured with this config (seeds 0-7): clean-minus-flipped mean weight 0.613-0.654 and noise rate of
# the top 70% 0.007-0.025 (input: 0.30); outer_lr 0.05 gives 0.35 / <= 0.03. Margins leave ~1.5x / 3x.
# balance_classes=True (an option) changes little here: 0.618-0.654 / 0.007-0.025.
@pytest.mark.parametrize("seed", [0, 1])
def test_flipped_labels_get_lower_weights(seed):
    x, targets, flipped = noisy_blobs(seed)
    config = WeightConfig(outer_epochs=20, outer_lr=0.1, inner_lr=0.01, valid_size=len(x), batch_size=32)
    result = learn_sample_weights(factory(100 + seed, 5), {"x": x}, targets, config=config, seed=seed)
    w = result.weights
    assert torch.allclose(w, torch.sigmoid(result.theta))
    clean, noisy = float(w[~flipped].mean()), float(w[flipped].mean())
    assert clean - noisy > 0.4, (clean, noisy)
    assert noisy < torch.sigmoid(torch.tensor(1.0)) < clean  # moved apart from the initial sigmoid(1)
    top = result.top_k(int(0.7 * len(x)))
    assert float(flipped[top].float().mean()) < 0.08
    assert [h["epoch"] for h in result.history] == list(range(1, 21))
    assert {"outer_loss", "w_mean", "w_min", "w_max", "w_std", "frac_above_0.8", "seconds"} <= set(
        result.history[0])


def _tiny_problem(n=7, d=3, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=gen, dtype=torch.float64)
    targets = torch.softmax(torch.randn(n, 2, generator=gen, dtype=torch.float64), -1)
    theta = torch.randn(n, generator=gen, dtype=torch.float64)
    return x, targets, theta


def _random_g(model, seed=1):
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(p.shape, generator=gen, dtype=p.dtype) for p in model.parameters()]


class Linear(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.fc = nn.Linear(d, 2, dtype=torch.float64)

    def forward(self, x):
        return self.fc(x)


def test_hypergradient_matches_finite_differences():
    torch.manual_seed(0)
    x, targets, theta = _tiny_problem()
    model, lr = Linear(3), 0.3
    g = _random_g(model)
    total = torch.sigmoid(theta).sum()  # S is detached in the method, so held fixed here

    def objective(th):  # F(theta) = <g, phi'(theta)>, phi' = phi_hat - lr grad_phi sum_i s_i CE_i / S
        loss = (torch.sigmoid(th) * soft_cross_entropy_per_sample(model(x), targets)).sum() / total
        grads = torch.autograd.grad(loss, list(model.parameters()))
        return sum(((p.detach() - lr * gr) * gi).sum() for p, gr, gi in zip(model.parameters(), grads, g))

    eps = 1e-6
    numeric = torch.zeros_like(theta)
    for i in range(len(theta)):
        step = torch.zeros_like(theta)
        step[i] = eps
        numeric[i] = (objective(theta + step) - objective(theta - step)) / (2 * eps)
    got = hypergradient(model, {"x": x}, targets, theta, g, inner_lr=lr, batch_size=3)
    assert got.abs().min() > 1e-6
    torch.testing.assert_close(got, numeric, rtol=1e-4, atol=1e-10)


def test_hypergradient_equals_per_sample_closed_form():
    """create_graph route (module) == -lr s(1-s)/S <grad CE_i, g> with vmap per-sample gradients."""
    torch.manual_seed(0)
    x, targets, theta = _tiny_problem(n=10, d=4)
    model = MLP(4, hidden=5, as_object=True).double()
    g = _random_g(model)
    params = {k: v.detach() for k, v in model.named_parameters()}

    def ce_one(p, xi, ti):
        out = torch.func.functional_call(model, p, (), {"x": xi[None]})
        return soft_cross_entropy_per_sample(out.logits, ti[None])[0]

    per_sample = torch.func.vmap(torch.func.grad(ce_one), in_dims=(None, 0, 0))(params, x, targets)
    dots = sum((per_sample[k] * gi).flatten(1).sum(1) for k, gi in zip(params, g))
    s = torch.sigmoid(theta)
    expected = -0.05 * s * (1 - s) / s.sum() * dots
    got = hypergradient(model, {"x": x}, targets, theta, g, inner_lr=0.05, batch_size=4)
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_central_hypergradient_equals_the_double_backward_route(dtype):
    """Forward passes only, on a float64 copy: the same dtheta, the model untouched, dropout masks shared."""
    torch.manual_seed(0)
    x, targets, theta = _tiny_problem(n=10, d=4)
    model = MLP(4, hidden=5, as_object=True).to(dtype)
    x, targets, theta = x.to(dtype), targets.to(dtype), theta.to(dtype)
    g = _random_g(model)
    before = [p.detach().clone() for p in model.parameters()]
    exact = hypergradient(model, {"x": x}, targets, theta, g, inner_lr=0.05, batch_size=4)
    got = hypergradient_central(model, {"x": x}, targets, theta, g, inner_lr=0.05, batch_size=3)
    assert got.dtype == dtype and exact.abs().min() > 0
    torch.testing.assert_close(got, exact, rtol=1e-4, atol=1e-9)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
    zero = hypergradient_central(model, {"x": x}, targets, theta, [torch.zeros_like(gi) for gi in g],
                                 inner_lr=0.05)
    assert not zero.any()
    dropped = factory(4, 4, dropout=0.5)().train()
    g = _random_g(dropped)
    torch.manual_seed(3)
    a = hypergradient_central(dropped, {"x": x.float()}, targets.float(), theta.float(), g, inner_lr=0.05)
    assert torch.isfinite(a).all() and a.abs().max() < 1.0  # different masks on the two sides would blow up


def test_resume_gives_identical_theta(tmp_path):
    x, targets, _ = noisy_blobs(3, n=64)
    make = factory(7, 5, dropout=0.3)  # dropout: the per-epoch torch RNG must be derived from (seed, t)
    config = WeightConfig(outer_epochs=5, outer_lr=0.1, inner_lr=0.01, valid_size=40, batch_size=16)
    rng_before = torch.get_rng_state()
    full = learn_sample_weights(make, {"x": x}, targets, config=config, seed=11)
    assert torch.equal(torch.get_rng_state(), rng_before)  # the caller's global RNG is left alone

    saved = []
    first = dataclasses.replace(config, outer_epochs=2)
    learn_sample_weights(make, {"x": x}, targets, config=first, seed=11, on_epoch_end=saved.append)
    assert [s.epoch for s in saved] == [1, 2]
    torch.save(dataclasses.asdict(saved[-1]), tmp_path / "state.pt")
    state = WeightState(**torch.load(tmp_path / "state.pt", weights_only=True))
    torch.manual_seed(999)  # as in a fresh process: the global RNG differs from the first run's
    resumed = learn_sample_weights(make, {"x": x}, targets, config=config, seed=11, state=state)
    assert torch.equal(resumed.theta, full.theta)
    assert not torch.equal(full.theta, torch.ones(64))
    assert [h["epoch"] for h in resumed.history] == [1, 2, 3, 4, 5]
    with pytest.raises(ValueError, match="state does not fit"):
        learn_sample_weights(make, {"x": x}, targets, config=config, seed=12, state=state)


def test_reverse_ce_values():
    logits = torch.zeros(1, 2)  # p = (0.5, 0.5); -log q_y = log(1 + e^-10), -log q_other = 10 + that
    expected = 0.5 * math.log1p(math.exp(-10)) + 0.5 * (10 + math.log1p(math.exp(-10)))
    assert float(reverse_cross_entropy(logits, torch.tensor([0]), a=10.0)) == pytest.approx(
        expected, rel=1e-6
    )


def test_outer_loss_ignores_lowest_weighted_rows():
    torch.manual_seed(0)
    n = 20
    x = torch.randn(n, 3)
    targets = nn.functional.one_hot(torch.arange(n) % 2, 2).float()
    weights = torch.linspace(0.1, 0.9, n)[torch.randperm(n)]
    assert float(weight_threshold(weights, 0.1)) == pytest.approx(float(weights.sort().values[2]))
    dropped = weights.argsort()[:2]  # floor(0.9 * 20) = 18 kept
    model = MLP(3, hidden=4)
    kw = dict(robust_a=10.0, drop_lowest=0.1, batch_size=8)
    g, loss = outer_gradient(model, {"x": x}, targets, weights, torch.arange(n), **kw)

    x2, t2 = x.clone(), targets.clone()
    x2[dropped] += 50.0
    t2[dropped] = 1 - t2[dropped]
    g2, loss2 = outer_gradient(model, {"x": x2}, t2, weights, torch.arange(n), **kw)
    assert loss2 == loss and all(torch.equal(a, b) for a, b in zip(g, g2))

    kept = weights.argsort()[5]
    x2[kept] += 50.0
    _, loss3 = outer_gradient(model, {"x": x2}, t2, weights, torch.arange(n), **kw)
    assert loss3 != loss

    keep = weights >= weights.sort().values[2]  # one batch of everything: loss = mean kept-row RCE
    direct = reverse_cross_entropy(model(x), targets.argmax(-1), a=10.0)[keep].mean()
    g_all, loss_all = outer_gradient(model, {"x": x}, targets, weights, torch.arange(n),
                                     robust_a=10.0, drop_lowest=0.1, batch_size=n)
    assert loss_all == pytest.approx(float(direct.detach()), rel=1e-6)
    for gr, ref in zip(g_all, torch.autograd.grad(direct, list(model.parameters()))):
        torch.testing.assert_close(gr, ref)


def test_class_balance_factors():
    labels = torch.tensor([0, 0, 0, 1, 1, 0])
    keep = torch.tensor([True, True, True, True, False, False])  # kept: three of class 0, one of class 1
    torch.testing.assert_close(class_balance_factors(labels, keep, 2), torch.tensor([4 / 6, 2.0]))
    balanced = torch.tensor([True, True, False, True, True, False])  # two kept rows of each class
    assert torch.equal(class_balance_factors(labels, balanced, 2), torch.ones(2))
    assert class_balance_factors(labels, labels == 1, 3).tolist() == [0.0, 1.0, 0.0]  # absent classes get 0


def test_balanced_outer_loss_weights_classes_equally():
    torch.manual_seed(0)
    n = 20  # 18 kept rows
    x = torch.randn(n, 3)
    model = MLP(3, hidden=4)
    weights = torch.linspace(0.1, 0.9, n)[torch.randperm(n)]
    kept = weights >= weight_threshold(weights, 0.1)
    kw = dict(robust_a=10.0, drop_lowest=0.1, batch_size=8)

    labels = torch.zeros(n, dtype=torch.long)  # kept rows alternate 0/1, so they are balanced
    labels[kept.nonzero().flatten()[1::2]] = 1
    targets = nn.functional.one_hot(labels, 2).float()
    g_off, loss_off = outer_gradient(model, {"x": x}, targets, weights, torch.arange(n), **kw)
    g_on, loss_on = outer_gradient(
        model, {"x": x}, targets, weights, torch.arange(n), **kw, balance_classes=True
    )
    assert loss_on == loss_off and all(torch.equal(a, b) for a, b in zip(g_on, g_off))

    labels = (torch.arange(n) % 3 == 0).long()  # a third of the rows in class 1
    targets = nn.functional.one_hot(labels, 2).float()
    g, loss = outer_gradient(model, {"x": x}, targets, weights, torch.arange(n),
                             **{**kw, "batch_size": n}, balance_classes=True)
    rce = reverse_cross_entropy(model(x), labels, a=10.0)
    k1 = int(labels[kept].sum())
    k0 = int(kept.sum()) - k1
    factors = torch.where(labels == 0, (k0 + k1) / (2 * k0), (k0 + k1) / (2 * k1))
    direct = (factors * rce)[kept].mean()
    for gr, ref in zip(g, torch.autograd.grad(direct, list(model.parameters()))):
        torch.testing.assert_close(gr, ref)
    assert loss == pytest.approx(
        float(rce[kept].mean().detach()), rel=1e-6
    )  # the reported loss stays unweighted


def test_top_k_indices_descending_and_stable():
    w = torch.tensor([0.5, 0.9, 0.5, 0.9, 0.1])
    assert top_k_indices(w, 3).tolist() == [1, 3, 0]
    assert top_k_indices(w, 10).tolist() == [1, 3, 0, 2, 4]
    with pytest.raises(ValueError):
        top_k_indices(w[None], 2)


def test_bad_shapes_raise_value_error():
    make, config = factory(0, 3), WeightConfig(outer_epochs=1)
    x, t = torch.randn(10, 3), torch.full((10, 2), 0.5)
    with pytest.raises(ValueError, match="targets must have shape"):
        learn_sample_weights(make, {"x": x}, t[:, 0], config=config)
    with pytest.raises(ValueError, match="first dimension N=10"):
        learn_sample_weights(make, {"x": x[:9]}, t, config=config)
    with pytest.raises(ValueError, match="non-empty dict"):
        learn_sample_weights(make, {}, t, config=config)
    model = make()
    g = [torch.zeros_like(p) for p in model.parameters()]
    with pytest.raises(ValueError, match="theta must have shape"):
        hypergradient(model, {"x": x}, t, torch.zeros(9), g, inner_lr=0.1, batch_size=4)
    with pytest.raises(ValueError, match="g must match"):
        hypergradient(model, {"x": x}, t, torch.zeros(10), g[:-1], inner_lr=0.1, batch_size=4)
