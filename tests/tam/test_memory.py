"""Tests for unigen.tam.memory: the FIFO memory bank, the gate and the momentum encoder."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from unigen.tam.memory import MemoryBank, gate_mask, make_momentum_copy, momentum_update


def _rows(start: int, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    ids = torch.arange(start, start + n)
    return ids.float().unsqueeze(1).repeat(1, 3), ids % 2


def test_empty_bank():
    bank = MemoryBank(4, 3)
    assert len(bank) == 0 and bank.features.shape == (0, 3) and bank.labels.shape == (0,)


def test_fifo_order_and_capacity():
    bank = MemoryBank(4, 3)
    bank.push(*_rows(0, 3))
    assert bank.features[:, 0].tolist() == [0, 1, 2]
    bank.push(*_rows(3, 3))
    assert len(bank) == 4
    assert bank.features[:, 0].tolist() == [2, 3, 4, 5]
    assert bank.labels.tolist() == [0, 1, 0, 1] and bank.labels.dtype == torch.long


def test_push_larger_than_capacity_keeps_newest():
    bank = MemoryBank(3, 3)
    bank.push(*_rows(0, 2))
    bank.push(*_rows(10, 5))
    assert bank.features[:, 0].tolist() == [12, 13, 14]


def test_gating_only_kept_rows_enter():
    bank = MemoryBank(8, 3)
    feats, labels = _rows(0, 4)
    weights = torch.tensor([0.9, 0.8, 0.95, 0.1])
    mask = gate_mask(weights, 0.8)
    assert mask.tolist() == [True, False, True, False]
    bank.push(feats, labels, mask)
    assert bank.features[:, 0].tolist() == [0, 2]
    assert gate_mask(None, 0.8, batch_size=3).tolist() == [True] * 3
    with pytest.raises(ValueError):
        gate_mask(None, 0.8)


def test_features_are_detached_and_shape_checked():
    bank = MemoryBank(4, 3)
    feats = torch.randn(2, 3, requires_grad=True)
    bank.push(feats * 2, torch.tensor([0, 1]))
    assert not bank.features.requires_grad
    with pytest.raises(ValueError):
        bank.push(torch.randn(2, 5), torch.tensor([0, 1]))


def test_state_dict_round_trip_and_reset():
    bank = MemoryBank(4, 3)
    bank.push(*_rows(0, 6))
    other = MemoryBank(4, 3)
    other.load_state_dict(bank.state_dict())
    assert torch.equal(other.features, bank.features) and torch.equal(other.labels, bank.labels)
    other.push(*_rows(6, 1))
    bank.push(*_rows(6, 1))
    assert torch.equal(other.features, bank.features)
    with pytest.raises(ValueError):
        MemoryBank(5, 3).load_state_dict(bank.state_dict())
    bank.reset()
    assert len(bank) == 0 and bank.features.shape == (0, 3)


def _linear(weight: list[float], bias: float) -> nn.Linear:
    layer = nn.Linear(2, 1)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([weight]))
        layer.bias.fill_(bias)
    return layer


def test_momentum_update_arithmetic():
    online, mom = _linear([1.0, 2.0], 3.0), _linear([0.0, -2.0], 1.0)
    momentum_update(online, mom, 0.75)
    assert mom.weight.tolist() == [[0.25, -1.0]] and mom.bias.tolist() == [1.5]
    momentum_update(online, mom, 1.0)
    assert mom.weight.tolist() == [[0.25, -1.0]] and mom.bias.tolist() == [1.5]
    momentum_update(online, mom, 0.0)
    assert torch.equal(mom.weight, online.weight) and torch.equal(mom.bias, online.bias)
    with pytest.raises(ValueError):
        momentum_update(online, mom, 1.5)


def test_momentum_update_copies_buffers():
    online, mom = nn.BatchNorm1d(2), nn.BatchNorm1d(2)
    online.train()(torch.randn(4, 2))
    momentum_update(online, mom, 0.5)
    assert torch.equal(mom.running_mean, online.running_mean)
    assert torch.equal(mom.num_batches_tracked, online.num_batches_tracked)


def test_make_momentum_copy():
    online = _linear([1.0, 2.0], 3.0)
    mom = make_momentum_copy(online)
    assert all(not p.requires_grad for p in mom.parameters())
    assert all(p.requires_grad for p in online.parameters())
    assert torch.equal(mom.weight, online.weight)
    assert mom.weight.data_ptr() != online.weight.data_ptr()
