"""The weighting stage runner: known flipped labels through the real LSTM task model and files."""

import json

import numpy as np
import pytest
import torch

from unigen.cli import main
from unigen.config import UniGenConfig, WeightConfig, load_config
from unigen.weight_stage import select_top, weight_file

from tam_helpers import LABELS, fake_vectors, sentiment_rows


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def noisy_rows(n=120, flip=0.3, seed=0):
    rows = sentiment_rows(n, seed=seed)
    rng = np.random.default_rng(seed)
    flipped = set(rng.choice(n, int(flip * n), replace=False).tolist())
    for i, row in enumerate(rows):
        row["id"] = f"r{i}"
        if i in flipped:
            row["probs"] = row["probs"][::-1]
    return rows, flipped


def write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def config(**weight):
    base = dict(outer_epochs=12, outer_lr=0.3, inner_lr=0.02, valid_size=10_000, batch_size=16)
    return UniGenConfig(device="cpu", weight=WeightConfig(**{**base, **weight}))


def test_rows_stay_aligned_and_top_k_is_selected(tmp_path):
    """Plumbing through the real LSTM task model; the learning itself is tested in test_weighting.py."""
    rows, _ = noisy_rows(40)
    write(tmp_path / "rows.jsonl", rows + [{"text": "dropped by relabel", "label": 1, "keep": False}])
    summary = weight_file(tmp_path / "rows.jsonl", tmp_path / "w", config(outer_epochs=3, keep_top=28),
                          progress=False, vectors=fake_vectors())
    out = [json.loads(x) for x in (tmp_path / "w" / "weighted.jsonl").read_text().splitlines()]
    assert [r["id"] for r in out] == [r["id"] for r in rows]  # aligned, the keep=false row skipped
    assert all(r["probs"] == s["probs"] for r, s in zip(out, rows))
    w = np.array([r["weight"] for r in out])
    np.testing.assert_allclose(w, 1 / (1 + np.exp(-np.array([r["theta"] for r in out]))), atol=1e-5)
    assert w.std() > 0  # the weights moved
    selected = np.array([r["keep"] for r in out])
    assert selected.sum() == 28 == summary["selected"]
    assert w[selected].min() >= w[~selected].max()
    assert len((tmp_path / "w" / "history.jsonl").read_text().splitlines()) == 3
    assert not (tmp_path / "w" / "state.pt").exists()


def test_killed_run_resumes_to_the_same_weights(tmp_path, monkeypatch):
    rows, _ = noisy_rows(48)
    write(tmp_path / "rows.jsonl", rows)
    cfg = config(outer_epochs=4)
    weight_file(tmp_path / "rows.jsonl", tmp_path / "full", cfg, progress=False, vectors=fake_vectors())

    import unigen.weight_stage as stage

    real = stage.learn_sample_weights

    def killed_after_two_epochs(*args, on_epoch_end, **kwargs):
        def hook(state):
            on_epoch_end(state)
            if state.epoch == 2:
                raise KeyboardInterrupt
        return real(*args, on_epoch_end=hook, **kwargs)

    monkeypatch.setattr(stage, "learn_sample_weights", killed_after_two_epochs)
    with pytest.raises(KeyboardInterrupt):
        weight_file(tmp_path / "rows.jsonl", tmp_path / "resumed", cfg, progress=False, vectors=fake_vectors())
    assert (tmp_path / "resumed" / "state.pt").is_file()
    monkeypatch.setattr(stage, "learn_sample_weights", real)
    weight_file(tmp_path / "rows.jsonl", tmp_path / "resumed", cfg, progress=False, vectors=fake_vectors())
    assert (tmp_path / "full" / "weighted.jsonl").read_text() == (tmp_path / "resumed" / "weighted.jsonl").read_text()


def test_select_top_is_stable():
    assert select_top(np.array([0.2, 0.9, 0.2, 0.5]), 3).tolist() == [True, True, False, True]
    assert select_top(np.array([0.2, 0.9]), 5).all()


def test_keep_count():
    assert WeightConfig().keep_count(900) == 200  # the paper's 200k of 900k
    assert WeightConfig(keep_fraction=None).keep_count(900) == 900
    assert WeightConfig(keep_top=10).keep_count(900) == 10 and WeightConfig(keep_top=10).keep_count(5) == 5


def test_cli_weight_rejects_malformed_rows(tmp_path, capsys):
    (tmp_path / "bad.jsonl").write_text('{"text": "fine", "probs": [0.5, 0.5]}\n{"text": "x", "probs": [2]}\n')
    assert main(["weight", "--data", str(tmp_path / "bad.jsonl"), "--output", str(tmp_path / "o")]) == 2
    assert "bad.jsonl:2" in capsys.readouterr().err


def test_inner_lr_defaults_per_task_model():
    from unigen.weight_stage import resolved_inner_lr

    assert resolved_inner_lr(load_config(None).weight) == 1e-3
    assert resolved_inner_lr(load_config(None, ["weight.tam=minilm-l6"]).weight) == 2e-5
    assert LABELS == ("negative", "positive")
