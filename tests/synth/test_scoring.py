"""LM scoring against a naive per-example loop, on a tiny random GPT-2."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from transformers import AutoModelForCausalLM, AutoTokenizer

from unigen.config import ScoringConfig
from unigen.synth.scoring import LMScorer

TEXTS = ["i love this movie", "awful", "it was not very good really . it was bad", "great fun film !"]
LABELS = ("negative", "positive")


@pytest.fixture(scope="module")
def lm(tiny_lm_dir):
    return AutoModelForCausalLM.from_pretrained(tiny_lm_dir).eval(), AutoTokenizer.from_pretrained(
        tiny_lm_dir
    )


def naive_nll(model, tokenizer, string):
    ids = torch.tensor([tokenizer(string)["input_ids"]])
    with torch.no_grad():
        logits = model(input_ids=ids).logits[0, :-1]
    return F.cross_entropy(logits, ids[0, 1:]).item()


def naive_next_token_logp(model, tokenizer, prompt, word):
    ids = torch.tensor([tokenizer(prompt)["input_ids"]])
    with torch.no_grad():
        logp = torch.log_softmax(model(input_ids=ids).logits[0, -1], -1)
    return logp[tokenizer(" " + word, add_special_tokens=False)["input_ids"][0]].item()


@pytest.mark.parametrize("batch_size", [1, 3, 16])
def test_nll_rule_matches_naive_loop(lm, batch_size):
    model, tok = lm
    cfg = ScoringConfig(rule="nll", batch_size=batch_size)
    got = LMScorer(model, tok, LABELS, cfg).scores(TEXTS)
    want = np.array([[naive_nll(model, tok, cfg.template.format(label=lab, text=t)) for lab in LABELS]
                     for t in TEXTS])
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("calibrate", [False, True])
def test_verbalizer_rule_matches_naive_loop(lm, calibrate):
    model, tok = lm
    cfg = ScoringConfig(rule="verbalizer", calibrate=calibrate, batch_size=3)
    got = LMScorer(model, tok, LABELS, cfg).scores(TEXTS)
    prompt = cfg.verbalizer_template.format
    want = np.array(
        [[-naive_next_token_logp(model, tok, prompt(text=t), lab) for lab in LABELS] for t in TEXTS]
    )
    if calibrate:
        want -= np.array([-naive_next_token_logp(model, tok, prompt(text="N/A"), lab) for lab in LABELS])
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_three_labels_and_predict_is_argmin(lm):
    model, tok = lm
    scorer = LMScorer(model, tok, ("negative", "neutral", "positive"), ScoringConfig(rule="nll"))
    scores = scorer.scores(TEXTS)
    assert scores.shape == (len(TEXTS), 3)
    np.testing.assert_array_equal(scorer.predict(TEXTS), scores.argmin(1))


def test_text_truncation_limits(lm):
    model, tok = lm
    long_text = " ".join(["great"] * 50)
    scorer = LMScorer(model, tok, LABELS, ScoringConfig(max_text_tokens=5))
    assert scorer.truncate(long_text) == "great great great great great"
    short = LMScorer(model, tok, LABELS, ScoringConfig(max_total_tokens=12))
    seqs = short._encode([short.config.template.format(label="positive", text=long_text)])
    assert len(seqs[0]) == 12


def test_include_padding_quirk_changes_only_padded_rows(lm):
    model, tok = lm
    texts = ["awful", "it was not very good really . it was bad"]
    masked = LMScorer(model, tok, LABELS, ScoringConfig(batch_size=4)).scores(texts)
    padded = LMScorer(model, tok, LABELS, ScoringConfig(batch_size=4, include_padding=True)).scores(texts)
    np.testing.assert_allclose(masked[1], padded[1], rtol=1e-5)  # the longest row has no padding
    assert not np.allclose(masked[0], padded[0])


def test_label_words_sharing_a_first_token_are_rejected(lm):
    model, tok = lm
    scorer = LMScorer(model, tok, ("good", "good"), ScoringConfig(rule="verbalizer"))
    with pytest.raises(ValueError, match="share their first token"):
        scorer.scores(["fun"])
