"""TaskModel.with_layers: a transformer task model with some of its layers kept (the teacher-made student of
``adapt.student=teacher``): which layers, an independent copy, save/load, BERT and MPNet, errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from unigen.tam.layers import kept_layer_indices
from unigen.tam.model import TaskModel

from tam_helpers import LABELS, make_tiny_bert, sentiment_rows

TEXTS = [r["text"] for r in sentiment_rows(12)]


@pytest.fixture(scope="module", params=["bert", "mpnet"])
def deep_model(request, tmp_path_factory) -> TaskModel:
    """A 5-layer tiny random BERT or MPNet task model (untrained heads), in eval mode."""
    folder = make_tiny_bert(tmp_path_factory.mktemp(f"tiny-{request.param}-5"), layers=5,
                            model_type=request.param)
    return TaskModel.build(str(folder), LABELS, max_length=16, projection_dim=16, seed=0).eval()


def _state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _assert_same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, msg=k)


def test_the_kept_indices_are_evenly_spaced_and_include_the_last():
    assert kept_layer_indices(12, 6) == [0, 2, 4, 7, 9, 11]
    assert kept_layer_indices(12, 1) == [11]
    assert kept_layer_indices(12, 2) == [0, 11]
    assert kept_layer_indices(12, 12) == list(range(12))
    assert kept_layer_indices(5, 3) == [0, 2, 4]
    for total in range(1, 13):
        for n in range(1, total + 1):
            kept = kept_layer_indices(total, n)
            assert len(set(kept)) == n and kept == sorted(kept) and kept[-1] == total - 1


def test_with_layers_keeps_the_right_layers_and_everything_else(deep_model):
    small = deep_model.with_layers(3)
    hf, small_hf = deep_model.encoder.model, small.encoder.model
    assert small.num_layers == small_hf.config.num_hidden_layers == len(small_hf.encoder.layer) == 3
    assert deep_model.num_layers == 5  # the original is untouched
    for j, i in enumerate([0, 2, 4]):
        _assert_same(_state(small_hf.encoder.layer[j]), _state(hf.encoder.layer[i]))
    _assert_same(_state(small_hf.embeddings), _state(hf.embeddings))
    if hasattr(hf.encoder, "relative_attention_bias"):  # MPNet's bias, shared by every layer
        _assert_same(_state(small_hf.encoder.relative_attention_bias),
                     _state(hf.encoder.relative_attention_bias))
    _assert_same(_state(small.projection), _state(deep_model.projection))
    _assert_same(_state(small.classifier), _state(deep_model.classifier))
    assert small.spec == deep_model.spec and not small.training
    assert sum(p.numel() for p in small.parameters()) < sum(p.numel() for p in deep_model.parameters())


def test_all_layers_kept_is_an_exact_copy_and_the_copy_is_independent(deep_model):
    before = deep_model.logits(TEXTS)
    full = deep_model.with_layers(5)
    np.testing.assert_allclose(full.logits(TEXTS), before, rtol=0, atol=1e-6)
    own = {p.data_ptr() for p in deep_model.parameters()}
    assert not own & {p.data_ptr() for p in full.parameters()}
    with torch.no_grad():
        for p in full.parameters():
            p.add_(1.0)
    np.testing.assert_array_equal(deep_model.logits(TEXTS), before)


def test_the_smaller_model_saves_and_loads_with_its_layers(deep_model, tmp_path):
    small = deep_model.with_layers(2)
    folder = small.save_pretrained(tmp_path / "small")
    assert json.loads((folder / "encoder" / "config.json").read_text())["num_hidden_layers"] == 2
    loaded = TaskModel.from_pretrained(folder)
    assert loaded.num_layers == len(loaded.encoder.model.encoder.layer) == 2
    np.testing.assert_allclose(loaded.logits(TEXTS), small.logits(TEXTS), rtol=0, atol=1e-6)
    record = json.loads((folder / "unigen_tam.json").read_text())
    assert record["parameters"] == sum(p.numel() for p in small.parameters())


def test_one_layer_keeps_the_last(deep_model):
    one = deep_model.with_layers(1)
    layers = deep_model.encoder.model.encoder.layer
    _assert_same(_state(one.encoder.model.encoder.layer[0]), _state(layers[4]))


@pytest.mark.parametrize("n", [0, -1, 6, 2.5, True])
def test_bad_layer_counts_are_errors(deep_model, n):
    with pytest.raises(ValueError, match="n must be an integer from 1 to the encoder's 5 layers"):
        deep_model.with_layers(n)


def test_the_lstm_has_no_layers_to_drop(tiny_lstm):
    model, _ = tiny_lstm
    assert model.num_layers is None
    with pytest.raises(ValueError, match="only a transformer task model.*LSTM"):
        model.with_layers(1)
