"""Tests for unigen.tam.losses against naive reference computations."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from unigen.tam.losses import reverse_cross_entropy, soft_cross_entropy, supervised_contrastive_loss

TAU = 0.2


def _naive_paper(anchors, labels, bank, bank_labels, tau):
    """Khosla SupCon with contrast set = other anchors + bank, as a plain double loop."""
    z = [a / a.norm() for a in anchors]
    k = [b / b.norm() for b in bank]
    losses = []
    for i in range(len(z)):
        contrast = [(z[j], int(labels[j])) for j in range(len(z)) if j != i]
        contrast += [(k[m], int(bank_labels[m])) for m in range(len(k))]
        denom = sum(math.exp(float(z[i] @ c) / tau) for c, _ in contrast)
        pos = [c for c, y in contrast if y == int(labels[i])]
        if not pos:
            continue
        losses.append(-sum(math.log(math.exp(float(z[i] @ p) / tau) / denom) for p in pos) / len(pos))
    return sum(losses) / len(losses)


def _naive_code(anchors, labels, bank, bank_labels, tau):
    """Method-spec 5.2: bank-only contrast, same-label denominator minus the first-B diagonal."""
    z = [a / a.norm() for a in anchors]
    k = [b / b.norm() for b in bank]
    losses = []
    for i in range(len(z)):
        pos = [m for m in range(len(k)) if int(bank_labels[m]) == int(labels[i])]
        denom_idx = [m for m in pos if m != i]  # m == i can only happen for m < B
        if not pos or not denom_idx:
            continue  # the paper code would return NaN here; the implementation skips the anchor
        denom = sum(math.exp(float(z[i] @ k[m]) / tau) for m in denom_idx)
        losses.append(-sum(math.log(math.exp(float(z[i] @ k[p]) / tau) / denom) for p in pos) / len(pos))
    return tau * sum(losses) / len(losses)


@pytest.fixture
def data():
    g = torch.Generator().manual_seed(0)
    anchors = torch.randn(6, 4, generator=g, dtype=torch.float64)
    labels = torch.tensor([0, 1, 0, 1, 1, 0])
    bank = torch.randn(5, 4, generator=g, dtype=torch.float64)
    bank_labels = torch.tensor([1, 0, 0, 1, 1])
    return anchors, labels, bank, bank_labels


def test_scl_paper_form_matches_naive(data):
    anchors, labels, bank, bank_labels = data
    got = supervised_contrastive_loss(anchors, labels, bank, bank_labels, temperature=TAU)
    want = _naive_paper(anchors, labels, bank, bank_labels, TAU)
    assert got.item() == pytest.approx(want, rel=1e-10)
    scaled = supervised_contrastive_loss(anchors, labels, bank, bank_labels, temperature=TAU,
                                         base_temperature=1.0)
    assert scaled.item() == pytest.approx(TAU * want, rel=1e-10)


def test_scl_paper_form_without_bank_and_unpaired_anchor(data):
    anchors, _, bank, _ = data
    labels = torch.tensor([0, 1, 0, 1, 1, 2])  # the anchor of class 2 has no positive
    empty = bank[:0]
    got = supervised_contrastive_loss(anchors, labels, empty, torch.empty(0, dtype=torch.long))
    assert got.item() == pytest.approx(_naive_paper(anchors, labels, empty, [], TAU), rel=1e-10)
    bank_labels = torch.tensor([3, 0, 0, 1, 3])
    got = supervised_contrastive_loss(anchors, labels, bank, bank_labels)
    assert got.item() == pytest.approx(_naive_paper(anchors, labels, bank, bank_labels, TAU), rel=1e-10)


def test_scl_no_positive_gives_connected_zero():
    anchors = torch.randn(3, 4, requires_grad=True)
    loss = supervised_contrastive_loss(
        anchors, torch.tensor([0, 1, 2]), torch.randn(2, 4), torch.tensor([5, 6])
    )
    assert loss.item() == 0.0 and loss.grad_fn is not None
    loss.backward()
    assert torch.equal(anchors.grad, torch.zeros_like(anchors))


def test_scl_gradient_is_finite_and_bank_gets_none(data):
    anchors, labels, bank, bank_labels = data
    anchors = anchors.clone().requires_grad_(True)
    bank = bank.clone().requires_grad_(True)
    supervised_contrastive_loss(anchors, labels, bank, bank_labels).backward()
    assert torch.isfinite(anchors.grad).all() and anchors.grad.abs().sum() > 0
    assert bank.grad is None


def test_scl_code_faithful_matches_naive(data):
    anchors, labels, bank, bank_labels = data
    # As in the code: the current batch's (momentum) features are enqueued first.
    full_bank = torch.cat([anchors + 0.1, bank])
    full_labels = torch.cat([labels, bank_labels])
    got = supervised_contrastive_loss(anchors, labels, full_bank, full_labels, code_faithful=True)
    assert got.item() == pytest.approx(_naive_code(anchors, labels, full_bank, full_labels, TAU), rel=1e-10)


def test_scl_code_faithful_guard(data):
    anchors, labels, _, _ = data
    # Bank of 6 rows: anchor 5 (label 0) has only its own diagonal entry as a same-label row,
    # anchor 4 (label 1) has none at all; the paper code would return NaN.
    bank = anchors[:6] * 2.0
    bank_labels = torch.tensor([2, 1, 2, 1, 3, 0])
    got = supervised_contrastive_loss(anchors, labels, bank, bank_labels, code_faithful=True)
    want = _naive_code(anchors, labels, bank, bank_labels, TAU)
    assert torch.isfinite(got) and got.item() == pytest.approx(want, rel=1e-10)


def test_soft_cross_entropy_manual_and_onehot():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(5, 3, generator=g, dtype=torch.float64)
    targets = torch.softmax(torch.randn(5, 3, generator=g, dtype=torch.float64), dim=1)
    manual = sum(
        -sum(float(targets[i, c]) * math.log(float(torch.softmax(logits[i], 0)[c])) for c in range(3))
        for i in range(5)
    ) / 5
    assert soft_cross_entropy(logits, targets).item() == pytest.approx(manual, rel=1e-10)
    y = torch.tensor([0, 2, 1, 1, 0])
    onehot = F.one_hot(y, 3).double()
    torch.testing.assert_close(soft_cross_entropy(logits, onehot), F.cross_entropy(logits, y))


def test_weighted_soft_cross_entropy():
    logits = torch.randn(4, 2, dtype=torch.float64)
    y = torch.tensor([0, 1, 1, 0])
    w = torch.tensor([0.5, 2.0, -1.0, 0.0], dtype=torch.float64)
    want = (w * F.cross_entropy(logits, y, reduction="none")).mean()
    torch.testing.assert_close(soft_cross_entropy(logits, F.one_hot(y, 2).double(), w), want)


def test_reverse_cross_entropy_values():
    logits = torch.tensor([[0.0, 0.0], [30.0, -30.0], [-30.0, 30.0]], dtype=torch.float64)
    labels = torch.tensor([1, 0, 0])
    got = reverse_cross_entropy(logits, labels, a=10.0)
    assert got.shape == (3,)
    lse = math.log(1.0 + math.exp(-10.0))
    # uniform prediction: 0.5 * (-log q_y) + 0.5 * (-log q_other) = 0.5 * lse + 0.5 * (10 + lse)
    assert got[0].item() == pytest.approx(5.0 + lse, rel=1e-12)
    assert got[1].item() == pytest.approx(lse, rel=1e-6) and got[1].item() < 1e-4  # confident, correct
    assert got[2].item() == pytest.approx(10.0 + lse, rel=1e-9)  # confident, wrong
    three = reverse_cross_entropy(torch.tensor([[0.0, 50.0, 0.0]]), torch.tensor([2]), a=4.0)
    assert three.item() == pytest.approx(4.0 + math.log(math.exp(4.0) + 2.0) - 4.0, rel=1e-5)
