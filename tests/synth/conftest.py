"""Fixtures shared by the synthetic-data tests."""

from __future__ import annotations

import pytest

from synth_fakes import tiny_llama


@pytest.fixture(scope="module")
def saved_llama(tmp_path_factory):
    """A tiny random Llama and its tokenizer saved as a Hugging Face folder (a generator by path)."""
    path = tmp_path_factory.mktemp("lm")
    model, tok = tiny_llama()
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path
