"""Shared fixtures: one per tiny model, built in-process (no network): ``tiny_lm_dir`` (a generator),
``bert_dir`` (an encoder), ``tiny_lstm`` (a fitted LSTM task model); and ``labelled_jsonl`` (a test file)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

WORDS = (
    "the text in positive negative neutral sentiment is of this a movie film great terrible good bad "
    "awful wonderful boring fun i love hate it was not very really product review N/A"
).split()


def word_tokenizer(extra_words: tuple[str, ...] = ()):
    """A word-level fast tokenizer (splits punctuation) with <pad>/<eos>/<unk>."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {tok: i for i, tok in enumerate(["<pad>", "<eos>", "<unk>", ":", '"', ".", "!", "/", *WORDS,
                                              *extra_words])}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="<eos>",
                                   unk_token="<unk>")


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Tiny models run faster on one thread, and tests never oversubscribe a shared CPU."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_lm_dir(tmp_path_factory) -> Path:
    """A saved tiny random GPT-2 with a word-level tokenizer."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    tokenizer = word_tokenizer()
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=len(tokenizer), n_positions=128, n_embd=32, n_layer=2, n_head=2,
                        bos_token_id=1, eos_token_id=1, pad_token_id=0)
    model = GPT2LMHeadModel(config)
    path = tmp_path_factory.mktemp("tiny-gpt2")
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def bert_dir(tmp_path_factory) -> Path:
    """A saved tiny random BERT encoder with a word-level tokenizer (a task-model encoder by path)."""
    from tam_helpers import make_tiny_bert

    return make_tiny_bert(tmp_path_factory.mktemp("tiny-bert"))


@pytest.fixture(scope="session")
def tiny_lstm(tmp_path_factory):
    """``(model, folder)``: a tiny LSTM task model briefly fitted on 48 sentiment rows (confident, in eval
    mode) and saved; treat both as read-only (copy the folder to change it)."""
    from unigen.tam.model import TaskModel

    from tam_helpers import LABELS, fake_vectors, fit_briefly, sentiment_rows

    rows = sentiment_rows(48)
    model = TaskModel.build("lstm", LABELS, texts=[r["text"] for r in rows],
                            vectors=fake_vectors(sentiment=1.0), lstm_hidden=8, projection_dim=16, seed=0)
    fit_briefly(model, rows)
    folder = model.save_pretrained(tmp_path_factory.mktemp("tiny-lstm"),
                                   training={"rows": len(rows), "seed": 0})
    return model, folder


@pytest.fixture()
def labelled_jsonl(tmp_path) -> Path:
    rows = ['{"text": "i love this movie", "label": 1}', '{"text": "awful boring film", "label": 0}',
            '{"text": "great product", "label": "positive"}', '{"text": "bad review", "label": 0}']
    path = tmp_path / "custom.jsonl"
    path.write_text("\n".join(rows) + "\n")
    return path
