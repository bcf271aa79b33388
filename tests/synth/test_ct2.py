"""The ctranslate2 backend on a tiny random Llama converted in the test (no network): scores agree with
the transformers scorer, sampling is reproducible per seed, stops at quote/newline/EOS tokens and
respects max_new_tokens; conversion is cached by source digest; the settings reach the stages."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from capabilities import need

need("ctranslate2")  # a dependency of the project: fails under CI=true when missing

from unigen.config import ScoringConfig, UniGenConfig, load_config  # noqa: E402
from unigen.errors import ConfigError, ModelNotAvailable  # noqa: E402
from unigen.synth import ct2_backend  # noqa: E402
from unigen.synth.ct2_backend import CT2Sampler, CT2Scorer, converted_dir, source_digest  # noqa: E402
from unigen.synth.sampling import SamplingSettings, filtered_distribution  # noqa: E402
from unigen.synth.scoring import FastLMScorer  # noqa: E402

from synth_fakes import tiny_llama  # noqa: E402

LABELS = ("negative", "positive")
PROMPT = 'The text in positive sentiment is: "'
TEXTS = ["I loved this movie, it was great!", "The food was cold and the waiter was rude.", "Nice screen",
         "Good service, fast delivery, awful packaging. A great product. Terrible battery.", "wow"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """(saved tiny Llama folder, HF model, tokenizer) with the model cache in a temporary folder."""
    cache = tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("UNIGEN_CACHE", str(cache))
        model, tok = tiny_llama(seed=3)
        with torch.no_grad():  # larger logits than the default init, so sampling is not near-uniform
            model.lm_head.weight.mul_(5)
        path = tmp_path_factory.mktemp("tiny-llama")
        model.save_pretrained(path)
        tok.save_pretrained(path)
        yield str(path), model, tok


def _scorers(tiny, compute_type, **cfg):
    path, model, tok = tiny
    config = ScoringConfig(batch_size=3, **cfg)
    return FastLMScorer(model, tok, LABELS, config), CT2Scorer(
        path, LABELS, config, compute_type=compute_type, threads=1
    )


@pytest.mark.parametrize("compute_type,tol", [("float32", 1e-4), ("int8", 0.05)])
@pytest.mark.parametrize("rule,calibrate", [("nll", False), ("verbalizer", False), ("verbalizer", True)])
def test_scores_match_transformers(tiny, compute_type, tol, rule, calibrate):
    hf, ct = _scorers(tiny, compute_type, calibrate=calibrate)
    sampled = [
        c.text for c in CT2Sampler(tiny[0], SamplingSettings(), 8, threads=1).sample(PROMPT, range(24))
    ]
    texts = TEXTS + [t for t in sampled if t.strip()]
    a, b = hf.scores(texts, rule=rule), ct.scores(texts, rule=rule)
    assert a.shape == b.shape == (len(texts), 2)
    assert np.abs(a - b).max() < tol
    margin = np.abs(a[:, 0] - a[:, 1]) > 2 * tol  # argmin is only defined away from ties
    np.testing.assert_array_equal(a.argmin(1)[margin], b.argmin(1)[margin])
    np.testing.assert_array_equal(ct.predict(texts, rule=rule), b.argmin(1))


def test_verbalizer_variants_match_transformers(tiny):
    hf, ct = _scorers(tiny, "float32", verbalizer_extra_templates=("{text}\nThis review is",),
                      verbalizer_extra_label_words=("bad|good",))
    assert np.abs(hf.scores(TEXTS, rule="verbalizer") - ct.scores(TEXTS, rule="verbalizer")).max() < 1e-4


def test_scorer_keeps_truncation_and_rejects_padding_quirk(tiny):
    hf, ct = _scorers(tiny, "float32", max_text_tokens=4)
    assert ct.truncate(TEXTS[3]) == hf.truncate(TEXTS[3])
    np.testing.assert_allclose(ct.content_free_scores(), hf.content_free_scores(), atol=1e-4)
    with pytest.raises(ModelNotAvailable, match="include_padding"):
        CT2Scorer(tiny[0], LABELS, ScoringConfig(include_padding=True))


def test_sampler_reproducible_per_seed(tiny):
    a = CT2Sampler(tiny[0], SamplingSettings(), batch_size=8, threads=1)
    first = a.sample(PROMPT, list(range(100, 116)))
    assert a.sample(PROMPT, list(range(100, 116))) == first  # same sampler, repeated call
    b = CT2Sampler(tiny[0], SamplingSettings(), batch_size=8, threads=1)
    b.sample(PROMPT, [5, 6, 7])  # other calls before do not matter
    assert b.sample(PROMPT, list(range(100, 116))) == first
    assert a.sample(PROMPT, list(range(200, 216))) != first
    assert len({c.ids for c in first}) > 8  # rows of one batch differ


def test_sampler_stops_and_decodes_like_lmsampler(tiny):
    path, _, tok = tiny
    for max_new in (31, 4):
        s = CT2Sampler(path, SamplingSettings(max_new_tokens=max_new), batch_size=16, threads=1)
        stop = set(s.stop_ids)
        out = s.sample(PROMPT, list(range(64)))
        assert len(out) == 64
        for c in out:
            assert 1 <= c.n_tokens == len(c.ids) <= max_new
            assert not stop & set(c.ids[:-1])  # nothing after the first stop token
            assert c.n_tokens == max_new or c.ids[-1] in stop  # ended by a stop token or the budget
            assert c.text == tok.decode(list(c.ids), skip_special_tokens=True)
        assert any(c.ids[-1] in stop for c in out) and any(c.n_tokens == max_new for c in out)
    assert tok.eos_token_id in stop
    assert all('"' in tok.decode([i]) or "\n" in tok.decode([i]) for i in stop - {tok.eos_token_id})


def test_sampler_budget_per_call_equals_a_sampler_of_that_budget(tiny):
    """A length class's budget (``max_new_tokens`` per call) samples as a sampler built with it."""
    wide = CT2Sampler(tiny[0], SamplingSettings(max_new_tokens=31), batch_size=8, threads=1)
    narrow = CT2Sampler(tiny[0], SamplingSettings(max_new_tokens=3), batch_size=8, threads=1)
    seeds = list(range(16))
    assert wide.sample(PROMPT, seeds, max_new_tokens=3) == narrow.sample(PROMPT, seeds)
    assert max(c.n_tokens for c in wide.sample(PROMPT, seeds)) > 3


def test_sampler_follows_top_k_top_p(tiny):
    """First tokens of many rows fall inside transformers' filtered support, with similar frequencies."""
    path, model, tok = tiny
    settings = SamplingSettings(top_k=10, top_p=0.8, max_new_tokens=1)
    out = CT2Sampler(path, settings, batch_size=500, compute_type="float32", threads=1).sample(
        PROMPT, range(2000)
    )
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([tok(PROMPT)["input_ids"]])).logits[:, -1]
    ids, probs = filtered_distribution(logits, settings)
    want = dict(zip(ids[0].tolist(), probs[0].tolist()))
    support = {i for i, p in want.items() if p > 0}
    got = np.bincount([c.ids[0] for c in out], minlength=len(tok))
    assert set(np.nonzero(got)[0].tolist()) <= support
    tv = 0.5 * sum(abs(got[i] / len(out) - want.get(i, 0.0)) for i in range(len(got)))
    assert 3 <= len(support) <= 10 and tv < 0.05


def test_conversion_is_cached_by_source_digest(tiny, tmp_path):
    path = tiny[0]
    first = converted_dir(path, "int8")
    assert converted_dir(path, "int8") == first
    meta = json.loads((first / "unigen_source.json").read_text())
    assert meta["sha256"] == source_digest(Path(path)) and meta["quantization"] == "int8"
    assert meta["sha256"][:16] in first.name and "int8" in first.name
    assert not [p for p in first.parent.iterdir() if p.name.startswith(".")]  # no temporary folders left
    changed = tmp_path / "changed"
    shutil.copytree(path, changed)
    cfg = json.loads((changed / "config.json").read_text())
    (changed / "config.json").write_text(json.dumps({**cfg, "rms_norm_eps": 1e-5}))
    assert converted_dir(str(changed), "int8") != first
    assert converted_dir(path, "float32") != first


def test_unsupported_architecture_fails_in_one_line(tiny, monkeypatch, tmp_path):
    from ctranslate2.converters import transformers as conv

    monkeypatch.setattr(
        conv, "_MODEL_LOADERS", {k: v for k, v in conv._MODEL_LOADERS.items() if k != "LlamaConfig"}
    )
    other = tmp_path / "other"
    shutil.copytree(tiny[0], other)
    (other / "note.txt").write_text("a different digest")
    with pytest.raises(ModelNotAvailable, match="cannot convert LlamaConfig") as exc:
        converted_dir(str(other), "int8")
    assert "\n" not in str(exc.value)


def test_backend_settings_fingerprints_and_factories(tiny):
    from unigen.evaluation.evaluate import load_classifier
    from unigen.synth.backends import make_sampler, make_scorer
    from unigen.synth.common import generate_fingerprint, relabel_fingerprint

    base = load_config(None, ["generate.backend=transformers", "scoring.backend=transformers"])
    assert UniGenConfig().generate.backend == UniGenConfig().scoring.backend == "ctranslate2"  # defaults
    ct = load_config(
        None,
        [f"generator={tiny[0]}", "generate.backend=ctranslate2", "scoring.backend=ctranslate2", "device=cpu"],
    )
    hf = dataclasses.replace(ct, generate=base.generate, scoring=base.scoring)
    assert generate_fingerprint(ct) != generate_fingerprint(hf)
    assert relabel_fingerprint(ct, "x") != relabel_fingerprint(hf, "x")
    bigger = dataclasses.replace(ct, generate=dataclasses.replace(ct.generate, batch_size=128))
    assert generate_fingerprint(bigger) != generate_fingerprint(ct)  # batch composition matters with ct2
    hf64 = dataclasses.replace(hf, generate=dataclasses.replace(hf.generate, batch_size=128))
    assert generate_fingerprint(hf64) == generate_fingerprint(hf)  # ... and not with transformers
    assert isinstance(make_sampler(ct), CT2Sampler)
    assert isinstance(make_scorer(ct), CT2Scorer)
    assert isinstance(load_classifier("prompt:", ct, progress=False).scorer, CT2Scorer)
    with pytest.raises(ConfigError, match="generate.precision"):
        load_config(None, ["generate.backend=ctranslate2", "generate.precision=bf16"])


def test_batch_seed_is_deterministic_and_in_range():
    a = ct2_backend.batch_seed([1, 2, 3])
    assert a == ct2_backend.batch_seed((1, 2, 3)) != ct2_backend.batch_seed([1, 2])
    assert 0 <= a < 2**31 - 1
