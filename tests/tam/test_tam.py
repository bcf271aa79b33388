"""Tests for unigen.tam.model / unigen.tam.lstm: tokenizer, encoders, heads, save/load, predict."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from unigen.errors import ModelNotAvailable
from unigen.tam.lstm import (
    PAD,
    UNK,
    LSTMEncoder,
    WordTokenizer,
    glove_embedding_matrix,
    lstm_parameter_count,
)
from unigen.tam.model import TAMOutput, TAMSpec, TaskModel

from tam_helpers import LABELS, fake_vectors, sentiment_rows

TEXTS = [r["text"] for r in sentiment_rows(12)]



def _build(kind: str, bert_dir, **kw) -> TaskModel:
    if kind == "lstm":
        return TaskModel.build("lstm", LABELS, texts=TEXTS, vectors=fake_vectors(), lstm_hidden=8,
                               projection_dim=16, seed=0, **kw)
    return TaskModel.build(str(bert_dir), LABELS, projection_dim=16, seed=0, **kw)


# ---------------------------------------------------------------- LSTM parts

def test_word_tokenizer_splits_and_builds_vocab():
    tok = WordTokenizer.build(["Don't stop, it's GOOD good!", "good"])
    assert tok.split("Don't stop, it's GOOD!") == ["do", "n't", "stop", ",", "it", "'s", "good", "!"]
    assert tok.tokens[:3] == [PAD, UNK, "good"]  # most frequent first
    assert tok.encode("good unseenword", 10) == [2, 1]
    assert tok.encode("   ", 10) == [1]  # never empty (packing needs length >= 1)
    assert tok.encode("good good good", 2) == [2, 2]
    batch = tok.batch(["good", "good good !"], 40)
    assert batch["input_ids"].shape == (2, 3)
    assert batch["attention_mask"].tolist() == [[1, 0, 0], [1, 1, 1]]


def test_vocab_cap():
    tok = WordTokenizer.build([" ".join(f"w{i}" for i in range(20))], max_vocab=7)
    assert len(tok) == 7 and tok.tokens[:2] == [PAD, UNK]


def test_glove_matrix_copies_known_rows():
    words, table = fake_vectors()
    tokens = [PAD, UNK, words[3], "notinglove"]
    matrix, found = glove_embedding_matrix(tokens, (words, table), generator=torch.Generator().manual_seed(0))
    assert found == 1
    assert torch.equal(matrix[0], torch.zeros(table.shape[1]))
    assert torch.allclose(matrix[2], torch.from_numpy(table[3]))
    assert 0 < matrix[3].abs().max() < 1.0  # small random vector


def test_lstm_under_7m_parameters_with_real_glove_shape():
    """A 50k-word vocabulary over the real 400k x 50 GloVe table stays under 7M parameters."""
    words = [f"w{i}" for i in range(400_000)]
    table = np.zeros((400_000, 50), dtype=np.float32)
    texts = [" ".join(f"w{i}" for i in range(j, j + 1000)) for j in range(0, 60_000, 1000)]
    model = TaskModel.build("lstm", LABELS, texts=texts, vectors=(words, table), seed=0)
    actual = sum(p.numel() for p in model.parameters())
    assert model.spec.vocab_size == 50_000 and model.spec.embed_dim == 50
    assert actual == lstm_parameter_count(50_000, 50, model.spec.hidden_size, 256, 2)
    assert actual < 7_000_000


def test_lstm_encoder_ignores_padding():
    enc = LSTMEncoder(10, 4, 3)
    ids = torch.tensor([[2, 3, 0, 0]])
    short = enc(ids[:, :2], torch.ones(1, 2, dtype=torch.long))
    padded = enc(ids, torch.tensor([[1, 1, 0, 0]]))
    assert padded.shape == (1, 6) and torch.allclose(short, padded, atol=1e-6)


# ---------------------------------------------------------------- both encoders

@pytest.mark.parametrize("kind", ["lstm", "bert"])
def test_forward_shapes_and_encode(kind, bert_dir):
    model = _build(kind, bert_dir)
    batch = model.encode(TEXTS[:3])
    assert set(batch) == {"input_ids", "attention_mask"} and batch["input_ids"].shape[0] == 3
    out = model(**batch)
    assert isinstance(out, TAMOutput)
    assert out.logits.shape == (3, 2) and out.features.shape == (3, 16)


@pytest.mark.parametrize("kind", ["lstm", "bert"])
def test_save_load_identical_probabilities(kind, bert_dir, tmp_path):
    source = shutil.copytree(bert_dir, tmp_path / "source")
    model = _build(kind, source if kind == "bert" else bert_dir)
    with torch.no_grad():  # move away from the initialisation so a reload that re-inits would differ
        for p in model.parameters():
            p.add_(0.01 * torch.randn_like(p))
    model.save_pretrained(tmp_path / "saved", training={"best_epoch": 1})
    shutil.rmtree(source)  # the saved folder must not need the original encoder folder
    loaded = TaskModel.from_pretrained(tmp_path / "saved")
    assert not loaded.training and loaded.labels == LABELS
    np.testing.assert_array_equal(loaded.predict_proba(TEXTS), model.predict_proba(TEXTS))
    files = {p.name for p in (tmp_path / "saved").iterdir()}
    assert {"unigen_tam.json", "model.safetensors"} <= files
    assert not any(f.endswith((".bin", ".pt", ".pkl")) for f in files)
    assert ("vocab.json" in files) == (kind == "lstm")


@pytest.mark.parametrize("kind", ["lstm", "bert"])
def test_single_string_gives_single_answer(kind, bert_dir):
    model = _build(kind, bert_dir)
    probs = model.predict_proba(TEXTS, batch_size=5)
    one = model.predict_proba(TEXTS[0])
    assert probs.shape == (len(TEXTS), 2) and one.shape == (2,)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(one, probs[0], rtol=1e-5, atol=1e-6)
    assert model.predict(TEXTS[0]) in LABELS
    labels = model.predict(TEXTS)
    assert isinstance(labels, list) and len(labels) == len(TEXTS) and set(labels) <= set(LABELS)
    assert model.predict_proba([]).shape == (0, 2)
    with pytest.raises(TypeError, match="item 1"):
        model.predict_proba(["ok", 3])


def test_predict_keeps_training_mode_and_grads_off(bert_dir):
    model = _build("bert", bert_dir)
    model.train()
    model.predict_proba(TEXTS[:2])
    assert model.training


def test_fresh_copy_is_independent_and_equal(bert_dir):
    model = _build("lstm", bert_dir)
    copy = model.fresh_copy()
    for (n, a), (_, b) in zip(model.state_dict().items(), copy.state_dict().items()):
        assert torch.equal(a, b), n
    with torch.no_grad():
        next(copy.parameters()).add_(1.0)
    assert not torch.equal(next(copy.parameters()), next(model.parameters()))


def test_build_is_seeded_and_reinitialise_changes_heads(bert_dir):
    a, b = _build("bert", bert_dir), _build("bert", bert_dir)
    assert torch.equal(a.projection[0].weight, b.projection[0].weight)
    emb = a.encoder.model.embeddings.word_embeddings.weight.clone()
    a.reinitialise_heads()
    assert not torch.equal(a.projection[0].weight, b.projection[0].weight)
    assert torch.equal(a.encoder.model.embeddings.word_embeddings.weight, emb)


def test_errors(tmp_path):
    with pytest.raises(ValueError, match="training texts"):
        TaskModel.build("lstm", LABELS)
    with pytest.raises(ModelNotAvailable, match="not a UniGen task-model folder"):
        TaskModel.from_pretrained(tmp_path)
    with pytest.raises(ValueError, match="architecture"):
        TAMSpec("cnn", "x", LABELS)


def test_mean_pooling_ignores_padding_and_differs_from_cls(bert_dir):
    model = _build("bert", bert_dir, pooling="mean").eval()
    short, long = "the movie was good", "the movie was really very good , so lovely and superb"
    with torch.no_grad():
        alone = model.encoder(**model.encode([short]))
        padded = model.encoder(**model.encode([short, long]))[0]
        torch.testing.assert_close(alone[0], padded, atol=1e-5, rtol=1e-5)
        cls_vec = _build("bert", bert_dir).encoder(**model.encode([short]))[0]
    assert not torch.allclose(cls_vec, alone[0])
    with pytest.raises(ValueError, match="pooling"):
        _build("bert", bert_dir, pooling="max")


@pytest.mark.parametrize("kind", ["bert", "lstm"])
@pytest.mark.parametrize("overhead", [None, 1])  # 1: nearly every batch is cut into passes by length
def test_predictions_keep_input_order_under_length_sorting(bert_dir, kind, overhead, monkeypatch):
    if overhead is not None:
        monkeypatch.setattr("unigen.tam.batching.PASS_OVERHEAD_TOKENS", overhead)
    model = _build(kind, bert_dir if kind == "bert" else None)
    texts = ["good", "the movie was really very good , so lovely", "bad", "it was awful and boring !", "so"]
    together = model.predict_proba(texts, batch_size=2)
    np.testing.assert_allclose(model.predict_proba(texts, batch_size=5), together, atol=1e-5)
    one_by_one = np.stack([model.predict_proba(t) for t in texts])
    np.testing.assert_allclose(together, one_by_one, atol=1e-5)


# ---------------------------------------------------------------- untrusted folders, long texts

@pytest.fixture()
def saved_lstm(tmp_path):
    return _build("lstm", None).save_pretrained(tmp_path / "model")


def test_saved_record_carries_the_sha256_of_every_file(saved_lstm):
    import hashlib
    import json

    record = json.loads((saved_lstm / "unigen_tam.json").read_text())
    assert set(record["sha256"]) == {"model.safetensors", "vocab.json"}
    assert record["sha256"]["model.safetensors"] == hashlib.sha256(
        (saved_lstm / "model.safetensors").read_bytes()).hexdigest()
    assert not [p for p in saved_lstm.parent.rglob(".tmp-*")]  # the temporary folder is gone


@pytest.mark.parametrize("damage", ["flip", "truncate", "vocab"])
def test_a_damaged_folder_is_refused(saved_lstm, damage):
    weights = saved_lstm / "model.safetensors"
    if damage == "flip":
        data = bytearray(weights.read_bytes())
        data[-5] ^= 0xFF
        weights.write_bytes(bytes(data))
    elif damage == "truncate":
        weights.write_bytes(weights.read_bytes()[:100])
    else:
        (saved_lstm / "vocab.json").write_text('{"tokens": ["<pad>", "<unk>", "evil"]}')
    with pytest.raises(ModelNotAvailable, match="does not match its sha256") as info:
        TaskModel.from_pretrained(saved_lstm)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("name", ["pytorch_model.bin", "extra.pkl", "sub/checkpoint.pt"])
def test_a_folder_with_a_pickle_is_refused(saved_lstm, name):
    (saved_lstm / name).parent.mkdir(exist_ok=True)
    (saved_lstm / name).write_bytes(b"\x80\x04K\x01.")  # pickle of 1
    with pytest.raises(ModelNotAvailable, match="pickle file"):
        TaskModel.from_pretrained(saved_lstm)


def test_a_mismatched_or_malformed_record_fails_clearly(saved_lstm):
    import json

    path = saved_lstm / "unigen_tam.json"
    record = json.loads(path.read_text())
    path.write_text(json.dumps({**record, "hidden_size": 99}))
    with pytest.raises(ModelNotAvailable, match="do not make the model unigen_tam.json describes"):
        TaskModel.from_pretrained(saved_lstm)
    path.write_text(json.dumps({k: v for k, v in record.items() if k != "labels"}))
    with pytest.raises(ModelNotAvailable, match="KeyError"):
        TaskModel.from_pretrained(saved_lstm)
    for bad in ("[1, 2]", '{"format": "unigen-tam", "format_version": "9"}', "[" * 100_000):
        path.write_text(bad)
        with pytest.raises(ModelNotAvailable):
            TaskModel.from_pretrained(saved_lstm)
    path.write_text(json.dumps({k: v for k, v in record.items() if k != "sha256"}))  # an older folder
    assert TaskModel.from_pretrained(saved_lstm).labels == LABELS
    (saved_lstm / "model.safetensors").unlink()
    with pytest.raises(ModelNotAvailable, match="model.safetensors is missing"):
        TaskModel.from_pretrained(saved_lstm)


@pytest.mark.parametrize("kind", ["lstm", "bert"])
def test_loading_never_unpickles(kind, bert_dir, tmp_path, monkeypatch):
    import pickle

    path = _build(kind, bert_dir).save_pretrained(tmp_path / kind)

    def refuse(*args, **kwargs):
        raise AssertionError("unpickling while loading a task model")

    for module, name in ((pickle, "load"), (pickle, "loads"), (pickle, "Unpickler"), (torch, "load")):
        monkeypatch.setattr(module, name, refuse)
    assert TaskModel.from_pretrained(path).labels == LABELS


def test_a_failed_save_leaves_whole_files_only(saved_lstm, monkeypatch):
    import errno

    import safetensors.torch

    from unigen.errors import UniGenError, WriteError

    before = {p.name: p.read_bytes() for p in saved_lstm.iterdir()}

    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(safetensors.torch, "save_model", disk_full)
    with pytest.raises(WriteError, match="No space left on device") as info:
        _build("lstm", None, max_length=7).save_pretrained(saved_lstm)
    assert isinstance(info.value, UniGenError) and isinstance(info.value, OSError)
    assert {p.name: p.read_bytes() for p in saved_lstm.iterdir()} == before  # the old model, untouched
    assert not list(saved_lstm.parent.glob(".tmp-*"))


@pytest.mark.parametrize("kind", ["lstm", "bert"])
def test_long_texts_are_truncated_not_rejected(kind, bert_dir, monkeypatch):
    import unigen.tam.model as model_module
    import unigen.tam.words as words_module
    from unigen.tam.words import max_chars, model_input

    model = _build(kind, bert_dir).eval()
    long = "good movie " * 1_000_000  # 11 MB
    tokenised: list[int] = []  # the length of what reaches the tokenizer, not a wall-clock bound

    def recording(text, limit):
        out = model_input(text, limit)
        tokenised.append(len(out))
        return out

    monkeypatch.setattr(model_module, "model_input", recording)  # the transformer's path
    monkeypatch.setattr(words_module, "model_input", recording)  # the LSTM's word tokenizer
    probs = model.predict_proba([long, "x", "\x00 nul", "\ud83d\ude00 emoji"])
    assert np.allclose(probs.sum(axis=1), 1) and np.isfinite(probs).all()
    assert max(tokenised) == max_chars(model.spec.max_length) < 10_000  # only the head of the 11 MB text
    assert np.allclose(probs[0], model.predict_proba(["good movie " * 200])[0], atol=1e-6)


def test_the_card_says_long_texts_are_truncated(saved_lstm):
    card = (saved_lstm / "README.md").read_text()
    assert "truncated, not rejected" in card and "token limit (40 tokens)" in card


def test_predict_cli_on_hostile_stdin(saved_lstm, monkeypatch, capsys):
    import io
    import json
    import sys

    from unigen.cli import main

    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"\xef\xbb\xbfgood movie\r\n\x00 nul\r\n"
                                                                  + b"bad " * 1_000_000 + b"\n")))
    assert main(["predict", "--model", str(saved_lstm), "--device", "cpu"]) == 0
    out = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [o["text"][:10] for o in out] == ["good movie", "\x00 nul", "bad bad ba"]
    assert all(set(o["probabilities"]) == {"negative", "positive"} for o in out)
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"fine\ncaf\xe9\n")))
    assert main(["predict", "--model", str(saved_lstm), "--device", "cpu"]) == 2
    assert capsys.readouterr().err == "unigen: error: <stdin>:2: not valid UTF-8 (byte 4 of the line)\n"
