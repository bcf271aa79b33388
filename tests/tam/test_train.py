"""Tests for unigen.tam.train / .data / .stage and the train and predict commands, with tiny local models."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import torch

import unigen.tam.train as train_mod
from unigen.cli import main
from unigen.config import TrainConfig
from unigen.errors import DataError
from unigen.tam.memory import MemoryBank
from unigen.tam.train import split_indices, train_task_model
from unigen.tam.training_data import TrainingData, parse_rows, read_training_rows

from tam_helpers import LABELS, fake_vectors, sentiment_rows

LSTM = {"tam": "lstm", "lstm_hidden": 8, "projection_dim": 16, "batch_size": 8, "lr": 2e-2}



def _train(rows, seed=0, **overrides):
    cfg = TrainConfig(**{**LSTM, **overrides})
    return train_task_model(rows, cfg, LABELS, seed=seed, vectors=fake_vectors(), progress=False)


def _accuracy(model, rows):
    gold = [LABELS[int(np.argmax(r["probs"]))] for r in rows]
    return float(np.mean([p == g for p, g in zip(model.predict([r["text"] for r in rows]), gold)]))


# ---------------------------------------------------------------- training

@pytest.mark.parametrize("kind", ["lstm", "bert"])
def test_tiny_model_overfits(kind, bert_dir):
    distinct = sentiment_rows(12)
    rows = distinct * 32  # one epoch = 44 steps of 8
    overrides = {"epochs": 1} if kind == "lstm" else {"epochs": 1, "tam": str(bert_dir), "lr": 5e-3}
    result = _train(rows, **overrides)
    assert _accuracy(result.model, distinct) == 1.0
    assert result.best_epoch == 1 and result.completed and not result.model.training
    assert set(result.history[0]) >= {"loss", "ce", "scl", "valid_acc", "seconds", "samples_per_s"}


def _strip_timing(history):
    return [{k: v for k, v in h.items() if k not in ("seconds", "samples_per_s")} for h in history]


@pytest.mark.parametrize("code_faithful", [False, True])
def test_resume_matches_uninterrupted_run(tmp_path, code_faithful):
    rows = sentiment_rows(40, weights=True)
    cfg = TrainConfig(**LSTM, epochs=3, code_faithful=code_faithful, bank_threshold=0.3)
    common = {"seed": 3, "vectors": fake_vectors(), "progress": False}
    full = train_task_model(rows, cfg, LABELS, workdir=tmp_path / "a", **common)
    part = train_task_model(rows, cfg, LABELS, workdir=tmp_path / "b", max_epochs_this_run=1, **common)
    assert not part.completed and len(part.history) == 1
    assert len((tmp_path / "b" / "metrics.jsonl").read_text().splitlines()) == 1
    resumed = train_task_model(rows, cfg, LABELS, workdir=tmp_path / "b", **common)
    assert resumed.completed and resumed.best_epoch == full.best_epoch
    assert _strip_timing(resumed.history) == _strip_timing(full.history)
    for (name, a), (_, b) in zip(full.model.state_dict().items(), resumed.model.state_dict().items()):
        assert torch.equal(a, b), name
    lines = (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(x)["epoch"] for x in lines] == [1, 2, 3]
    # a finished workdir returns the same result (no checkpoint is written after the last epoch, so it is
    # trained again, deterministically, from the checkpoint of epoch 2)
    again = train_task_model(rows, cfg, LABELS, workdir=tmp_path / "b", **common)
    assert _strip_timing(again.history) == _strip_timing(full.history)
    with pytest.raises(RuntimeError, match="different training run"):
        train_task_model(rows, cfg, LABELS, workdir=tmp_path / "b", **{**common, "seed": 4})


def test_same_seed_same_result_and_split():
    a, b = _train(sentiment_rows(24), epochs=2), _train(sentiment_rows(24), epochs=2)
    assert _strip_timing(a.history) == _strip_timing(b.history)
    train, valid = split_indices(50, 0.1, seed=1)
    assert len(valid) == 5 and len(train) == 45 and not set(train) & set(valid)
    assert np.array_equal(valid, split_indices(50, 0.1, seed=1)[1])
    with pytest.raises(ValueError):
        split_indices(1, 0.1, seed=0)


class _SpyBank(MemoryBank):
    pushes: list  # (labels pushed, was the gate applied)

    def push(self, features, labels, keep_mask=None):
        kept = labels if keep_mask is None else labels[keep_mask.to(labels.device)]
        type(self).pushes.append((kept.tolist(), keep_mask is not None))
        super().push(features, labels, keep_mask)


def _gated_rows():
    """Positive rows have weight 0.9 (enter the bank), negative rows 0.5 (must not)."""
    rows = sentiment_rows(40)
    for r in rows:
        r["weight"] = 0.9 if r["probs"][1] > 0.5 else 0.5
    return rows


@pytest.mark.parametrize("code_faithful", [False, True])
def test_memory_bank_gate_in_loop(monkeypatch, code_faithful):
    _SpyBank.pushes = []
    monkeypatch.setattr(train_mod, "MemoryBank", _SpyBank)
    _train(_gated_rows(), epochs=1, code_faithful=code_faithful)
    pushes = _SpyBank.pushes
    assert len(pushes) == 5  # 36 training rows / batch 8
    if code_faithful:  # the first batch enters ungated, as in the paper code
        assert pushes[0][1] is False and 0 in pushes[0][0]
        pushes = pushes[1:]
    assert all(gated for _, gated in pushes)
    entered = [y for labels, _ in pushes for y in labels]
    assert entered and set(entered) == {1}


def test_gate_off_lets_every_row_in(monkeypatch):
    _SpyBank.pushes = []
    monkeypatch.setattr(train_mod, "MemoryBank", _SpyBank)
    _train(_gated_rows(), epochs=1, denoise_bank=False)
    assert {y for labels, _ in _SpyBank.pushes for y in labels} == {0, 1}


def test_scl_off_builds_no_bank_or_momentum(monkeypatch):
    _SpyBank.pushes = []
    monkeypatch.setattr(train_mod, "MemoryBank", _SpyBank)
    result = _train(sentiment_rows(24), epochs=1, scl_weight=0.0)
    assert _SpyBank.pushes == [] and result.history[0]["scl"] == 0.0
    assert result.history[0]["loss"] == pytest.approx(result.history[0]["ce"])


def test_weight_ce_and_hard_targets_change_the_loss():
    rows = sentiment_rows(24, weights=True)
    base = _train(rows, epochs=1, scl_weight=0.0).history[0]["ce"]
    assert _train(rows, epochs=1, scl_weight=0.0, weight_ce=True).history[0]["ce"] < base  # weights < 1
    assert _train(rows, epochs=1, scl_weight=0.0, targets="hard").history[0]["ce"] != base


# ---------------------------------------------------------------- data

def _write(path, rows):
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n")
    return path


def test_read_rows_probs_labels_keep_weights(tmp_path):
    path = _write(tmp_path / "rows.jsonl", [
        {"text": "good", "probs": [0.2, 0.8], "weight": 0.9},
        {"text": "dropped", "label": 0, "keep": False},
        "",
        {"text": "bad", "label": 0, "weight": 0.1},
    ])
    data = read_training_rows(path, 2)
    assert data.texts == ["good", "bad"] and data.hard_labels().tolist() == [1, 0]
    np.testing.assert_allclose(data.targets, [[0.2, 0.8], [1.0, 0.0]])
    np.testing.assert_allclose(data.weights, [0.9, 0.1])


@pytest.mark.parametrize("bad,match", [
    ("{not json", "not valid JSON"),
    ({"probs": [0.5, 0.5]}, "'text'"),
    ({"text": "x"}, "'probs' or 'label'"),
    ({"text": "x", "probs": [0.5, 0.6]}, "sum to"),
    ({"text": "x", "probs": [1.0]}, "list of 2"),
    ({"text": "x", "label": 2}, "class id"),
    ({"text": "x", "label": 1, "weight": "high"}, "'weight'"),
    ({"text": "x", "label": 1, "keep": "yes"}, "'keep'"),
    ({"text": "x", "label": 1, "weight": 0.5}, "every kept row"),
])
def test_malformed_row_names_file_and_line(tmp_path, bad, match):
    path = _write(tmp_path / "rows.jsonl", [{"text": "fine", "label": 0}, bad])
    with pytest.raises(DataError, match=match) as err:
        read_training_rows(path, 2)
    assert f"{path}:2" in str(err.value)


def test_in_memory_inputs():
    with pytest.raises(DataError, match=r"rows\[1\]"):
        parse_rows([{"text": "a", "label": 0}, {"text": "b"}], 2)
    with pytest.raises(DataError, match="sum to"):
        TrainingData(["a"], np.array([[0.3, 0.3]]))
    texts = [r["text"] for r in sentiment_rows(20)]
    targets = np.array([r["probs"] for r in sentiment_rows(20)])
    result = _train((texts, targets, None), epochs=1)
    assert result.history[0]["bank_size"] == 18  # 20 rows - 2 held out, all enter without weights


# ---------------------------------------------------------------- CLI runners

def test_train_and_predict_commands(tmp_path, bert_dir, capsys, monkeypatch):
    data = tmp_path / "rows.jsonl"
    _write(data, sentiment_rows(30))
    out = tmp_path / "train"
    settings = [
        "--set",
        f"train.tam={bert_dir}",
        "--set",
        "train.epochs=1",
        "--set",
        "train.projection_dim=16",
        "--set",
        "device=cpu",
    ]
    assert main(["train", "--data", str(data), "--output", str(out), "--quiet", *settings]) == 0
    assert json.loads((out / "manifest.json").read_text())["status"] == "complete"  # a train stage folder
    assert (out / "checkpoints" / "metrics.jsonl").is_file()
    assert not (out / "checkpoints" / "checkpoint.pt").exists()
    saved = json.loads((out / "model" / "unigen_tam.json").read_text())
    assert saved["training"]["best_epoch"] == 1 and saved["labels"] == list(LABELS)
    assert saved["training"]["precision"] in ("bf16", "fp32")  # what train.precision=auto resolved to

    capsys.readouterr()
    for model in (out, out / "model"):  # the stage folder or its model folder
        assert main(["predict", "--model", str(model), "a good movie", "bad"]) == 0
        lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
        assert [x["text"] for x in lines] == ["a good movie", "bad"]
        assert all(x["label"] in LABELS and list(x["probabilities"]) == list(LABELS) for x in lines)
    monkeypatch.setattr("sys.stdin", io.StringIO("from stdin\n\nsecond\n"))
    assert main(["predict", "--model", str(out)]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [x["text"] for x in lines] == ["from stdin", "", "second"]  # one row per line
    assert lines[1]["label"] is None and lines[1]["probabilities"] is None  # an empty text: no label


# ---------------------------------------------------------------- schedule, pooling, token limits

def test_lr_schedule_warmup_then_linear_decay():
    cfg = TrainConfig(warmup=0.1, schedule="linear")
    factors = [cfg.lr_factor(step, 100) for step in range(100)]
    assert factors[:10] == pytest.approx([(s + 1) / 10 for s in range(10)])
    assert factors[10] == pytest.approx(1.0) and factors[-1] == pytest.approx(1 / 90)
    assert all(a >= b for a, b in zip(factors[10:], factors[11:]))
    assert [TrainConfig().lr_factor(s, 100) for s in (0, 50, 99)] == [1.0, 1.0, 1.0]  # the paper: constant


def test_min_steps_adds_epochs_for_small_data():
    cfg = TrainConfig(tam="lstm", batch_size=8, min_steps=30)
    assert cfg.planned_epochs(16) == 15  # 2 steps per epoch
    assert cfg.planned_epochs(1000) == 5  # the default epochs already give more steps
    result = _train(sentiment_rows(20), epochs=1, min_steps=9)  # 18 train rows: 3 steps per epoch
    assert len(result.history) == 3 and result.completed


def test_scheduled_lr_reaches_the_optimiser(monkeypatch):
    seen = []
    original = train_mod._Loop.step

    def spy(self, *args, **kwargs):
        seen.append(self.optimizer.param_groups[0]["lr"])
        return original(self, *args, **kwargs)

    monkeypatch.setattr(train_mod._Loop, "step", spy)
    _train(sentiment_rows(18), epochs=2, lr=1e-2, warmup=0.25, schedule="linear")  # 16 rows: 2 x 2 steps
    assert seen == pytest.approx([1e-2, 1e-2 * 3 / 3, 1e-2 * 2 / 3, 1e-2 * 1 / 3])


def test_resume_with_a_schedule_matches_uninterrupted_run(tmp_path):
    rows = sentiment_rows(40)
    cfg = TrainConfig(**LSTM, epochs=3, warmup=0.2, schedule="linear")
    common = {"seed": 1, "vectors": fake_vectors(), "progress": False}
    full = train_task_model(rows, cfg, LABELS, **common)
    train_task_model(rows, cfg, LABELS, workdir=tmp_path, max_epochs_this_run=2, **common)
    resumed = train_task_model(rows, cfg, LABELS, workdir=tmp_path, **common)
    assert _strip_timing(resumed.history) == _strip_timing(full.history)


def test_mean_pooling_and_prediction_limit_are_saved(bert_dir, tmp_path):
    rows = sentiment_rows(24)
    cfg = {"tam": str(bert_dir), "epochs": 1, "lr": 5e-3, "max_length": 8}
    result = _train(rows, pooling="mean", predict_max_length=16, **cfg)
    model = result.model
    assert model.spec.pooling == "mean" and model.spec.max_length == 16
    assert model.encode(["the movie was good " * 10])["input_ids"].shape[1] == 16
    assert model.encode(["the movie was good " * 10], 8)["input_ids"].shape[1] == 8
    from unigen.tam.model import TaskModel

    loaded = TaskModel.from_pretrained(model.save_pretrained(tmp_path / "m"))
    assert loaded.spec == model.spec
    texts = [r["text"] for r in rows]
    np.testing.assert_allclose(loaded.predict_proba(texts), model.predict_proba(texts), atol=1e-6)
    cls_model = _train(rows, pooling="cls", predict_max_length=None, **cfg).model
    assert cls_model.spec.pooling == "cls" and cls_model.spec.max_length == 8


# ---------------------------------------------------------------- weight averaging

def test_weight_average_is_the_mean_of_the_weights_after_each_late_step(monkeypatch):
    seen = []
    original = train_mod._Loop.step

    def record(self, *args, **kwargs):
        out = original(self, *args, **kwargs)
        seen.append({k: v.detach().clone() for k, v in self.model.state_dict().items()})
        return out

    monkeypatch.setattr(train_mod._Loop, "step", record)
    result = _train(sentiment_rows(34), epochs=2, average_from=0.5)  # 31 train rows: 4 steps x 2 epochs
    assert len(seen) == 8 and result.averaged and result.completed and result.best_epoch == 2
    for name, value in result.model.state_dict().items():
        if value.is_floating_point():
            expected = torch.stack([s[name] for s in seen[4:]]).mean(0)
            torch.testing.assert_close(value, expected, rtol=1e-5, atol=1e-6, msg=name)
    assert 0.0 <= result.best_valid_acc <= 1.0
    assert TrainConfig(average_from=0.9).average_start(8) == 7  # always at least the last step
    assert TrainConfig().average_start(8) is None and not _train(sentiment_rows(34), epochs=1).averaged
    with pytest.raises(ValueError, match="average_from"):
        TrainConfig(average_from=1.0)


def test_resume_with_weight_averaging_matches_uninterrupted_run(tmp_path):
    rows = sentiment_rows(40)
    cfg = TrainConfig(**LSTM, epochs=3, average_from=0.3)
    common = {"seed": 1, "vectors": fake_vectors(), "progress": False}
    full = train_task_model(rows, cfg, LABELS, **common)
    train_task_model(rows, cfg, LABELS, workdir=tmp_path, max_epochs_this_run=1, **common)
    resumed = train_task_model(rows, cfg, LABELS, workdir=tmp_path, **common)
    assert resumed.averaged and resumed.best_valid_acc == full.best_valid_acc
    for (name, a), (_, b) in zip(full.model.state_dict().items(), resumed.model.state_dict().items()):
        assert torch.equal(a, b), name


# ---------------------------------------------------------------- speed: bf16, length groups, checkpoints

def test_length_grouped_order_is_a_permutation_of_sorted_batches():
    lengths = torch.tensor([(i * 7919) % 37 + 1 for i in range(250)])
    order = torch.randperm(250, generator=torch.Generator().manual_seed(0))
    grouped = train_mod.length_grouped_order(order, lengths, 8, torch.Generator().manual_seed(1),
                                             group_batches=5)
    assert sorted(grouped.tolist()) == list(range(250))
    batches = [grouped[i:i + 8] for i in range(0, 250, 8)]
    # every batch comes from one chunk of 40 rows sorted by length: its rows' lengths are non-increasing
    chunk_of = {int(r): k // 40 for k, r in enumerate(order.tolist())}
    full = [b for b in batches if len(b) == 8]
    assert all(len({chunk_of[int(r)] for r in b}) == 1 for b in full)
    assert all(torch.all(lengths[b][:-1] >= lengths[b][1:]) for b in full)
    # padding: each batch's longest row is far closer to its shortest than in the shuffled order
    spread = np.mean([int(lengths[b].max() - lengths[b].min()) for b in full])
    shuffled = np.mean([int(lengths[order[i:i + 8]].max() - lengths[order[i:i + 8]].min())
                        for i in range(0, 248, 8)])
    assert spread < shuffled / 3
    again = train_mod.length_grouped_order(order, lengths, 8, torch.Generator().manual_seed(1),
                                           group_batches=5)
    assert torch.equal(grouped, again)


def test_precision_auto_is_bf16_for_transformers_on_native_bf16(monkeypatch):
    cpu = torch.device("cpu")
    import unigen.tam.autocast as autocast_mod

    monkeypatch.setattr(autocast_mod, "native_bf16", lambda device: True)
    assert train_mod.training_autocast(TrainConfig(tam="mpnet-base"), cpu)
    assert not train_mod.training_autocast(TrainConfig(tam="lstm"), cpu)
    assert not train_mod.training_autocast(TrainConfig(tam="mpnet-base", precision="fp32"), cpu)
    monkeypatch.setattr(autocast_mod, "native_bf16", lambda device: False)
    assert not train_mod.training_autocast(TrainConfig(tam="mpnet-base"), cpu)
    assert train_mod.training_autocast(TrainConfig(tam="mpnet-base", precision="bf16"), cpu)
    with pytest.raises(ValueError, match="train.precision"):
        TrainConfig(precision="fp16")


def test_bf16_training_learns_and_runs_the_forward_in_bf16(bert_dir, monkeypatch):
    seen = []
    original = train_mod.TaskModel.forward

    def record(self, input_ids, attention_mask):
        out = original(self, input_ids, attention_mask)
        seen.append(out.logits.dtype)
        return out

    monkeypatch.setattr(train_mod.TaskModel, "forward", record)
    distinct = sentiment_rows(12)
    result = _train(distinct * 32, epochs=1, tam=str(bert_dir), lr=5e-3, precision="bf16")
    assert torch.bfloat16 in seen and result.model_bf16
    assert not _train(distinct, epochs=1, tam=str(bert_dir), precision="fp32").model_bf16
    assert all(p.dtype == torch.float32 for p in result.model.parameters())  # weights stay float32
    assert _accuracy(result.model, distinct) == 1.0


def test_checkpoints_hold_only_what_resuming_needs(tmp_path, bert_dir):
    rows = sentiment_rows(40, weights=True)
    cfg = TrainConfig(tam=str(bert_dir), epochs=3, lr=5e-3, batch_size=8, precision="bf16",
                      bank_threshold=0.3)
    common = {"seed": 2, "progress": False}
    full = train_task_model(rows, cfg, LABELS, **common)
    ckpt = tmp_path / train_mod.CHECKPOINT_NAME
    train_task_model(rows, cfg, LABELS, workdir=tmp_path, max_epochs_this_run=1, **common)
    saved = torch.load(ckpt, weights_only=True)
    assert saved["state"]["epoch"] == 1 and saved["state"]["best_epoch"] == 1
    assert saved["state"]["best_state"] is None  # the best weights are the checkpoint's current weights
    train_task_model(rows, cfg, LABELS, workdir=tmp_path, max_epochs_this_run=1, **common)
    second = torch.load(ckpt, weights_only=True)["state"]
    assert second["epoch"] == 2
    assert (second["best_state"] is None) == (second["best_epoch"] == 2)
    resumed = train_task_model(rows, cfg, LABELS, workdir=tmp_path, **common)
    assert torch.load(ckpt, weights_only=True)["state"]["epoch"] == 2  # nothing written after the last epoch
    assert resumed.best_epoch == full.best_epoch
    assert _strip_timing(resumed.history) == _strip_timing(full.history)
    for (name, a), (_, b) in zip(full.model.state_dict().items(), resumed.model.state_dict().items()):
        assert torch.equal(a, b), name
