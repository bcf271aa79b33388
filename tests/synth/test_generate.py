"""Tests for the generation stage: post-processing, plan, sampler, shards, runner, kill-and-resume."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from unigen.config import ConfigError, load_config
from unigen.prompts import PROMPT_SETS, get_prompt_set
from unigen.stages import Stage
from unigen.synth.backends import make_sampler
from unigen.synth.generate_stage import generate_stage
from unigen.synth.generation import (
    KeySet,
    generate_shard,
    is_prompt_echo,
    plan_shards,
    plan_streams,
    postprocess,
    text_key,
)
from unigen.synth.sampling import (
    LMSampler,
    SamplingSettings,
    filtered_distribution,
    row_uniforms,
    sample_tokens,
)

from synth_fakes import FakeSampler, Killed, tiny_gpt2, tiny_llama

PROMPT = 'The text in positive sentiment is: "'


def cfg_for(*overrides: str):
    return load_config(None, ["generate.samples_per_label=6", "generate.shard_size=4", *overrides])


# ---------------------------------------------------------------- post-processing and prompts

@pytest.mark.parametrize("raw, expected", [
    ('Great movie!" and then more', ("Great movie!", "quote")),
    ("line one\nline two", ("line one", "newline")),
    ('He said "hi"\nbye', ("He said", "quote")),  # newline cut first, then the quote cut
    ('a\nb "c"', ("a", "newline")),
    ("  unterminated text ", ("unterminated text", "none")),
    ('"', ("", "quote")),
    (" \n text", ("", "newline")),
    ("", ("", "none")),
])
def test_postprocess(raw, expected):
    assert postprocess(raw) == expected


def test_prompt_echo():
    stems = [p.stem(w) for p in get_prompt_set("universal") for w in ("negative", "positive")]
    assert stems == ["The text in negative sentiment is", "The text in positive sentiment is"]
    assert is_prompt_echo("The text in positive sentiment is", stems)
    assert is_prompt_echo("the text in NEGATIVE sentiment is:", stems)
    assert not is_prompt_echo("I love this text, positive vibes", stems)


def test_prompt_sets_are_data():
    assert set(PROMPT_SETS) == {
        "universal",
        "movie",
        "products",
        "restaurant",
        "electronics",
        "tweet",
        "combined",
    }
    assert len(get_prompt_set("combined")) == 5
    movie = get_prompt_set("movie")[0]
    assert movie.render("neutral") == 'The movie review in neutral sentiment is: "'
    assert (
        movie.relabel.format(label="positive", text="x") == 'The movie review in positive sentiment is: "x"'
    )


@pytest.mark.parametrize("override, match", [
    ("generate.prompt_set=poems", "prompt_set"),
    ("generate.top_p=1.5", "top_p"),
    ("generate.temperature=0", "temperature"),
    ("generate.precision=fp8", "precision"),
    ("generate.samples=3", "unknown setting"),
    ("relabel.scoring_rule=magic", "scoring_rule"),
    ("relabel.threshold=1.2", "threshold"),
])
def test_bad_settings_raise_clear_errors(override, match):
    with pytest.raises(ConfigError, match=match):
        load_config(None, [override])


def test_keyset_is_a_compact_set():
    keys = [text_key(f"text {i}") for i in range(50)] + [2 ** 64 - 1, 0]
    ks = KeySet(keys[:30], buffer=7)  # several merges into the sorted array
    for k in keys[30:]:
        ks.add(k)
    ks.add(keys[3])
    assert len(ks) == len(set(keys)) and all(k in ks for k in keys)
    assert text_key("not there") not in ks


# ---------------------------------------------------------------- plan

def test_plan_round_robin_and_sizes():
    labels = ("negative", "positive")
    specs = plan_shards(plan_streams(2, get_prompt_set("universal"), 300), labels, 256, 42)
    assert [(s.label, s.size) for s in specs] == [(0, 256), (1, 256), (0, 44), (1, 44)]
    assert [s.index for s in specs] == [0, 1, 2, 3] and len({s.seed for s in specs}) == 4
    streams = plan_streams(3, get_prompt_set("combined"), 7)  # three labels, five domains
    assert [s.quota for s in streams[:5]] == [2, 2, 1, 1, 1] and len(streams) == 15
    assert len(plan_streams(2, get_prompt_set("combined"), 3)) == 6  # empty streams are left out


# ---------------------------------------------------------------- sampler

def test_filtered_distribution_top_k_top_p():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    ids, probs = filtered_distribution(logits, SamplingSettings(top_k=3, top_p=1.0))
    assert ids.tolist() == [[0, 1, 2]] and torch.allclose(probs, torch.tensor([[0.5, 0.3, 0.15]]) / 0.95)
    ids, probs = filtered_distribution(logits, SamplingSettings(top_k=0, top_p=0.75))  # 0.5 + 0.3 reach 0.75
    assert torch.allclose(probs, torch.tensor([[0.625, 0.375, 0.0, 0.0]]))
    _, probs = filtered_distribution(logits, SamplingSettings(top_k=0, top_p=0.9, temperature=0.5))
    assert torch.allclose(probs[0, :2], torch.tensor([25.0, 9.0]) / 34.0, atol=1e-6) and probs[0, 2] == 0
    picked = sample_tokens(ids, probs, torch.tensor([0.0]))
    assert picked.tolist() == [0]
    assert sample_tokens(ids, probs, torch.tensor([0.9999])).tolist() == [1]  # never a removed token


@pytest.mark.parametrize("make", [tiny_llama, tiny_gpt2])
def test_sampler_matches_a_full_forward_and_ignores_batch_size(make):
    model, tok = make()
    settings = SamplingSettings(top_k=40, top_p=0.9, max_new_tokens=12)
    seeds = list(range(7))
    rows = LMSampler(model, tok, settings, batch_size=3).sample(PROMPT, seeds)
    assert [r.text for r in rows] == [
        r.text for r in LMSampler(model, tok, settings, batch_size=7).sample(PROMPT, seeds)
    ]
    fixed = LMSampler(model, tok, settings, batch_size=3, refill=False).sample(
        PROMPT, seeds
    )  # no continuous batching
    assert [r.ids for r in fixed] == [r.ids for r in rows]
    prompt_ids = tok(PROMPT)["input_ids"]
    uniforms = row_uniforms(seeds, settings.max_new_tokens)
    sampler = LMSampler(model, tok, settings)
    for i, row in enumerate(rows):  # replay each row without the cache: same tokens, stop where expected
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([prompt_ids + list(row.ids)])).logits[
                0, len(prompt_ids) - 1 :
            ]
        for step, token in enumerate(row.ids):
            ids, probs = filtered_distribution(logits[step: step + 1], settings)
            assert sample_tokens(ids, probs, uniforms[i, step: step + 1]).item() == token
        stopped = [bool(sampler.stop_mask[t]) for t in row.ids]
        assert not any(stopped[:-1]) and (stopped[-1] or len(row.ids) == settings.max_new_tokens)


def test_greedy_equals_hf_generate():
    model, tok = tiny_llama()
    ids = tok(PROMPT, return_tensors="pt")["input_ids"]
    ref = model.generate(
        input_ids=ids,
        attention_mask=torch.ones_like(ids),
        do_sample=False,
        max_new_tokens=10,
        pad_token_id=tok.pad_token_id,
    )
    ours = LMSampler(model, tok, SamplingSettings(top_k=1, max_new_tokens=10)).sample(PROMPT, [0, 1])
    expected = postprocess(tok.decode(ref[0, ids.shape[1]:], skip_special_tokens=True))
    assert [postprocess(r.text) for r in ours] == [expected, expected]


# ---------------------------------------------------------------- shards and runner

def test_generate_shard_rejections_and_rows():
    cfg = cfg_for()
    spec = plan_shards(plan_streams(2, get_prompt_set("universal"), 6), cfg.labels, 6, 42)[1]
    stems = ["The text in negative sentiment is", "The text in positive sentiment is"]
    seen: set[int] = set()
    rows, stats = generate_shard(FakeSampler(), spec, prompt_set="universal", stems=stems, seen=seen)
    assert len(rows) == 6 and len({r["text"] for r in rows}) == 6 and len(seen) == 6
    assert all(r["prompt_label"] == 1 and r["prompt_set"] == "universal" and r["text"] for r in rows)
    assert set(rows[0]) >= {"id", "text", "prompt_label", "prompt_set", "domain", "prompt", "shard", "seed"}
    assert stats["attempts"] == rows[-1]["attempt"] + 1
    assert stats["attempts"] == stats["accepted"] + sum(stats["rejected"].values())
    again, _ = generate_shard(FakeSampler(), spec, prompt_set="universal", stems=stems, seen=None)
    assert [r["text"] for r in again][:2] == [r["text"] for r in rows][:2]


def test_generate_shard_min_words_rejects_short_texts():
    spec = plan_shards(plan_streams(2, get_prompt_set("universal"), 6), ("negative", "positive"), 6, 42)[1]
    stems = ["The text in negative sentiment is", "The text in positive sentiment is"]
    plain, plain_stats = generate_shard(FakeSampler(), spec, prompt_set="universal", stems=stems, seen=set())
    rows, stats = generate_shard(
        FakeSampler(), spec, prompt_set="universal", stems=stems, seen=set(), min_words=3
    )
    assert min(len(r["text"].split()) for r in plain) < 3 and "short" not in plain_stats["rejected"]
    assert len(rows) == 6 and all(len(r["text"].split()) >= 3 for r in rows)
    assert stats["rejected"]["short"] > 0


def test_generate_stage_tiny_model_end_to_end(tmp_path):
    # the transformers backend: on the default ctranslate2 one the tiny model would be ignored for SmolLM2
    cfg = cfg_for("generate.lengths=[]", "generate.max_new_tokens=8", "labels=[negative, neutral, positive]",
                  "generate.backend=transformers")
    lm = tiny_llama()
    out = generate_stage(cfg, tmp_path, progress=False, lm=lm)
    st = Stage.load(out, "generate")
    rows = list(st.iter_rows())
    assert len(rows) == 18 and sorted({r["prompt_label"] for r in rows}) == [0, 1, 2]
    assert st.manifest["counts"]["per_label"] == {"negative": 6, "neutral": 6, "positive": 6}
    assert (out / "datacard.md").read_text().startswith("# Generated data")
    assert generate_stage(cfg, tmp_path, progress=False, sampler=FakeSampler(fail_after=0)) == out  # skipped


@pytest.mark.parametrize("prompt_set", ["universal", "combined"])
def test_kill_and_resume_matches_uninterrupted(tmp_path, prompt_set):
    cfg = cfg_for(f"generate.prompt_set={prompt_set}", "generate.samples_per_label=10")
    reference = list(Stage.load(generate_stage(cfg, tmp_path / "a", progress=False, sampler=FakeSampler()))
                     .iter_rows())
    for fail_after in (1, 3, 5):  # killed mid-run, repeatedly, each time with a partial file left behind
        try:
            out = generate_stage(
                cfg, tmp_path / "b", progress=False, sampler=FakeSampler(fail_after=fail_after)
            )
            break
        except Killed:
            shard_dir = next((tmp_path / "b").glob("01_generate/*/shards"))
            (shard_dir / ".tmp-shard-00009.jsonl.dead").write_text('{"text": "half')
    out = generate_stage(cfg, tmp_path / "b", progress=False, sampler=FakeSampler())
    assert list(Stage.load(out).iter_rows()) == reference
    assert Stage.load(out).manifest["resumes"] >= 1


def test_kill_and_resume_with_a_real_tiny_model(tmp_path):
    # the transformers backend: else the sampler is SmolLM2's, not lm
    cfg = cfg_for("generate.lengths=[]", "generate.max_new_tokens=6", "generate.backend=transformers")
    lm = tiny_gpt2()
    reference = list(Stage.load(generate_stage(cfg, tmp_path / "a", progress=False, lm=lm)).iter_rows())

    class Dying:
        def __init__(self, inner, after):
            self.inner, self.left = inner, after

        def sample(self, prompt, seeds, **budget):
            self.left -= 1
            if self.left < 0:
                raise Killed("kill")
            return self.inner.sample(prompt, seeds, **budget)

    with pytest.raises(Killed):
        generate_stage(cfg, tmp_path / "b", progress=False, sampler=Dying(make_sampler(cfg, lm), 2))
    out = generate_stage(cfg, tmp_path / "b", progress=False, lm=lm)
    assert list(Stage.load(out).iter_rows()) == reference


def test_dedup_switch_changes_fingerprint(tmp_path):
    cfg = cfg_for()
    off = dataclasses.replace(cfg, generate=dataclasses.replace(cfg.generate, dedup=False))
    a = generate_stage(cfg, tmp_path, progress=False, sampler=FakeSampler())
    b = generate_stage(off, tmp_path, progress=False, sampler=FakeSampler())
    assert a != b
    assert Stage.load(b).manifest["counts"]["rejected"].get("duplicate", 0) == 0
    assert Stage.load(a).manifest["counts"]["rejected"]["duplicate"] > 0
