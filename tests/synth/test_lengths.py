"""Length-conditioned prompts (``generate.lengths``) and the relabel stage's balance check.

Length classes: the config shape and its one-line errors, the prompts and relabel templates of each class,
the split of ``samples_per_label`` by shares, each class's new-token budget reaching the sampler, the rows
recording their class, kill-and-resume equality, the until_kept loop, and the default left as it was
(fingerprint, rows, sampler calls). Balance: the pure summary and its place in the relabel manifest and card.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from unigen.config import ConfigError, GenerateConfig, fingerprint_dict, load_config
from unigen.prompts import LENGTH_CLASSES, get_prompt, get_prompt_set, length_variants
from unigen.stages import Stage
from unigen.synth.balance import IMBALANCE_LIMIT, prompt_balance
from unigen.synth.common import generate_fingerprint
from unigen.synth.generate_stage import generate_stage, plan_generation, prompt_stems
from unigen.synth.generation import plan_streams, split_by_shares
from unigen.synth.relabel_stage import relabel_stage
from unigen.synth.relabeling import score_rows
from unigen.synth.sampling import Continuation, LMSampler, SamplingSettings
from unigen.synth.stage import synthesize

from synth_fakes import FakeSampler, FakeScorer, Killed, tiny_llama

LENGTHS = ("generate.lengths=sentence,short,long", "generate.length_shares=0.5,0.3,0.2")


def cfg_for(*overrides: str):
    return load_config(None, ["generate.samples_per_label=10", "generate.shard_size=4", *overrides])


class BudgetSampler(FakeSampler):
    """:class:`FakeSampler` that records the new-token budget of every call and respects it."""

    def __init__(self, fail_after: int | None = None):
        super().__init__(fail_after)
        self.budgets: list[tuple[str, int | None]] = []

    def sample(self, prompt, seeds, *, max_new_tokens=None):
        self.budgets.append((prompt, max_new_tokens))
        return [Continuation(c.text, min(c.n_tokens, max_new_tokens or 31))
                for c in super().sample(prompt, seeds)]


# ---------------------------------------------------------------- config and prompts

def test_set_overrides_and_defaults():
    cfg = cfg_for(*LENGTHS, "generate.length_tokens=20,40,80")
    variants = cfg.generate.length_variants()
    assert [v.length.name for v in variants] == ["sentence", "short", "long"]
    assert [v.share for v in variants] == pytest.approx([0.5, 0.3, 0.2])
    assert [v.max_new_tokens for v in variants] == [20, 40, 80]
    equal = cfg_for("generate.lengths=[short, long]").generate.length_variants()
    assert [(v.share, v.max_new_tokens) for v in equal] == [(0.5, 64), (0.5, 160)]  # the classes' budgets
    assert GenerateConfig().lengths == ("sentence", "short", "long")  # the default since 2026-12-05
    assert cfg_for("generate.lengths=[]").generate.length_variants() == ()


@pytest.mark.parametrize("overrides, match", [
    (["generate.lengths=sentence,huge"], "unknown length class 'huge'"),
    (["generate.lengths=long,long"], "twice"),
    (["generate.lengths=short,long", "generate.length_shares=1"], "one value per"),
    (["generate.lengths=short,long", "generate.length_shares=1,0"], "positive"),
    (["generate.lengths=short", "generate.length_shares=a"], "length_shares item must be a number"),
    (["generate.lengths=short", "generate.length_tokens=1.5"], "length_tokens item must be an integer"),
    (["generate.lengths=[]", "generate.length_tokens=40"], "need generate.lengths"),
])
def test_config_errors_are_one_line(overrides, match):
    with pytest.raises(ConfigError, match=match) as err:
        cfg_for(*overrides)
    assert "\n" not in str(err.value)


def test_one_prompt_keeps_the_fingerprint_it_had_before_length_classes():
    one = cfg_for("generate.lengths=[]")
    assert not {"lengths", "length_shares", "length_tokens"} & set(fingerprint_dict(one.generate))
    assert fingerprint_dict(cfg_for().generate)["lengths"] == ["sentence", "short", "long"]
    assert generate_fingerprint(cfg_for(*LENGTHS)) != generate_fingerprint(one)
    assert generate_fingerprint(cfg_for(*LENGTHS)) != generate_fingerprint(cfg_for(LENGTHS[0]))
    assert generate_fingerprint(cfg_for()) != generate_fingerprint(one)


@pytest.mark.parametrize("overrides", [["run.method=zerogen", "run.domain=movie"],
                                       ["run.method=sungen", "run.domain=tweet"],
                                       ["run.ablations=[one-prompt]"]])
def test_baselines_and_the_one_prompt_ablation_use_the_papers_single_prompt(overrides):
    assert cfg_for(*overrides).generate.lengths == ()
    assert cfg_for(*overrides, "generate.lengths=[short]").generate.lengths == ("short",)  # a user's wins


@pytest.mark.parametrize("domain, length, subject", [
    ("universal", "sentence", "sentence"),
    ("universal", "short", "short review"),
    ("universal", "long", "long review"),
    ("movie", "long", "long movie review"),
    ("tweet", "sentence", "one-sentence tweet"),
])
def test_length_prompts_and_relabel_templates(domain, length, subject):
    prompt = get_prompt(domain, length)
    assert prompt.render("positive") == f'The {subject} in positive sentiment is: "'
    assert prompt.relabel.format(label="negative", text="x") == f'The {subject} in negative sentiment is: "x"'
    assert (prompt.domain, prompt.length) == (domain, length)


def test_length_classes_are_data():
    assert set(LENGTH_CLASSES) == {"sentence", "short", "long"}
    assert get_prompt("movie") == get_prompt_set("movie")[0]  # no length: the prompt as before
    with pytest.raises(ConfigError, match="unknown length class"):
        get_prompt("universal", "epic")
    stems = prompt_stems(cfg_for("generate.lengths=long"))
    assert {"The text in positive sentiment is", "The long review in negative sentiment is"} <= set(stems)


# ---------------------------------------------------------------- plan

def test_split_by_shares_is_exact():
    assert split_by_shares(10, [0.5, 0.3, 0.2]) == [5, 3, 2]
    assert split_by_shares(7, [1, 1, 1]) == [3, 2, 2]  # ties to the earlier share
    assert split_by_shares(11, [0.5, 0.3, 0.2]) == [6, 3, 2]
    assert split_by_shares(2, [1, 1, 1]) == [1, 1, 0]
    for total in range(30):
        assert sum(split_by_shares(total, [0.2, 0.7, 0.1])) == total


def test_plan_splits_labels_by_shares_then_prompts():
    variants = length_variants(("sentence", "long"), (3, 1), (31, 160))
    streams = plan_streams(2, get_prompt_set("combined"), 16, variants)
    per = Counter((s.label, s.prompt.length) for s in streams for _ in range(s.quota))
    assert per == {(0, "sentence"): 12, (0, "long"): 4, (1, "sentence"): 12, (1, "long"): 4}
    assert {s.prompt.domain for s in streams} == set(p.domain for p in get_prompt_set("combined"))
    assert {(s.prompt.length, s.max_new_tokens) for s in streams} == {("sentence", 31), ("long", 160)}
    assert len(plan_streams(2, get_prompt_set("combined"), 2, variants)) == 4  # empty streams left out
    specs = plan_generation(cfg_for(*LENGTHS))
    assert {(s.length, s.max_new_tokens) for s in specs} == {("sentence", 31), ("short", 64), ("long", 160)}
    one_prompt = plan_generation(cfg_for("generate.lengths=[]"))
    assert all(s.length == "" and s.max_new_tokens is None for s in one_prompt)


# ---------------------------------------------------------------- the generation stage

def test_shares_and_budgets_reach_the_rows_and_the_sampler(tmp_path):
    cfg = cfg_for(*LENGTHS, "generate.prompt_set=combined")
    sampler = BudgetSampler()
    out = generate_stage(cfg, tmp_path, progress=False, sampler=sampler)
    rows = list(Stage.load(out).iter_rows())
    per = Counter((r["prompt_label"], r["length"]) for r in rows)
    assert per == {(y, n): k for y in (0, 1) for n, k in (("sentence", 5), ("short", 3), ("long", 2))}
    budget = {"sentence": 31, "short": 64, "long": 160}
    for r in rows:
        assert r["prompt"] == get_prompt(r["domain"], r["length"]).render(cfg.labels[r["prompt_label"]])
        assert r["n_tokens"] <= budget[r["length"]]
    planned = {s.prompt: s.max_new_tokens for s in plan_generation(cfg)}  # one stream per row of 5 + 3 + 2
    assert len(planned) == 20 and {b for _, b in sampler.budgets} == {31, 64, 160}
    assert all(b == planned[prompt] for prompt, b in sampler.budgets)
    manifest = Stage.load(out).manifest
    assert manifest["counts"]["per_length"] == {"sentence": 10, "short": 6, "long": 4}
    card = (out / "datacard.md").read_text()
    assert "`long` (20%, at most 160 new tokens)" in card and "| `short` |" in card


def test_one_prompt_rows_and_sampler_calls_are_unchanged(tmp_path):
    class NoBudget(FakeSampler):  # the sampler interface before length classes
        def sample(self, prompt, seeds):
            return super().sample(prompt, seeds)

    out = generate_stage(cfg_for("generate.lengths=[]"), tmp_path, progress=False, sampler=NoBudget())
    rows = list(Stage.load(out).iter_rows())
    assert rows and all("length" not in r for r in rows)
    assert "at most 31 new tokens" in (out / "datacard.md").read_text()
    assert "per_length" not in Stage.load(out).manifest["counts"]


def test_lmsampler_budget_per_call_equals_a_sampler_of_that_budget():
    model, tok = tiny_llama()
    prompt, seeds = 'The long review in positive sentiment is: "', list(range(9))
    wide = LMSampler(model, tok, SamplingSettings(max_new_tokens=20), batch_size=4)
    for refill in (True, False):
        narrow = LMSampler(model, tok, SamplingSettings(max_new_tokens=5), batch_size=4, refill=refill)
        assert wide.sample(prompt, seeds, max_new_tokens=5) == narrow.sample(prompt, seeds)
    long = wide.sample(prompt, seeds)
    assert max(c.n_tokens for c in long) > 5 and all(c.n_tokens <= 20 for c in long)


@pytest.mark.parametrize("prompt_set", ["universal", "combined"])
def test_kill_and_resume_matches_uninterrupted(tmp_path, prompt_set):
    cfg = cfg_for(*LENGTHS, f"generate.prompt_set={prompt_set}")
    reference = list(Stage.load(generate_stage(cfg, tmp_path / "a", progress=False, sampler=BudgetSampler()))
                     .iter_rows())
    for fail_after in (1, 4, 7):
        try:
            generate_stage(cfg, tmp_path / "b", progress=False, sampler=BudgetSampler(fail_after=fail_after))
            break
        except Killed:
            pass
    out = generate_stage(cfg, tmp_path / "b", progress=False, sampler=BudgetSampler())
    assert list(Stage.load(out).iter_rows()) == reference
    assert Stage.load(out).manifest["resumes"] >= 1


def test_a_real_tiny_model_with_lengths_resumes_to_the_same_rows(tmp_path):
    cfg = cfg_for("generate.lengths=sentence,long", "generate.length_tokens=4,9",
                  "generate.samples_per_label=6", "generate.backend=transformers")
    lm = tiny_llama()
    reference = list(Stage.load(generate_stage(cfg, tmp_path / "a", progress=False, lm=lm)).iter_rows())
    assert max(r["n_tokens"] for r in reference if r["length"] == "sentence") <= 4
    assert max(r["n_tokens"] for r in reference if r["length"] == "long") > 4

    class Dying:
        def __init__(self, inner):
            self.inner, self.left = inner, 2

        def sample(self, prompt, seeds, **budget):
            self.left -= 1
            if self.left < 0:
                raise Killed("kill")
            return self.inner.sample(prompt, seeds, **budget)

    with pytest.raises(Killed):
        generate_stage(cfg, tmp_path / "b", progress=False,
                       sampler=Dying(LMSampler(lm[0], lm[1], SamplingSettings(max_new_tokens=31))))
    out = generate_stage(cfg, tmp_path / "b", progress=False, lm=lm)
    assert list(Stage.load(out).iter_rows()) == reference


# ---------------------------------------------------------------- relabel

def test_score_rows_uses_each_rows_length_template():
    rows = [{"text": "good positive", "domain": "universal", "length": "long", "prompt_label": 1},
            {"text": "bad negative", "domain": "universal", "prompt_label": 0},
            {"text": "fine positive", "domain": "movie", "length": "sentence", "prompt_label": 1}]
    scorer = FakeScorer(("negative", "positive"), invert_nll=False)
    scores = score_rows(scorer, rows, "nll")
    assert sorted(scorer.templates) == sorted([
        'The long review in {label} sentiment is: "{text}"', 'The text in {label} sentiment is: "{text}"',
        'The one-sentence movie review in {label} sentiment is: "{text}"'])
    np.testing.assert_array_equal(scores.argmin(1), [1, 0, 1])


def test_relabel_stage_scores_with_the_length_templates(tmp_path):
    cfg = cfg_for(*LENGTHS, "relabel.scoring_rule=auto", "relabel.auto_sample=12")
    gen = generate_stage(cfg, tmp_path, progress=False, sampler=BudgetSampler())
    scorer = FakeScorer(cfg.labels)
    out = relabel_stage(cfg, tmp_path, gen, progress=False, scorer=scorer)
    manifest = Stage.load(out).manifest
    assert manifest["rule_choice"]["sample_size"] == 12  # 2 rows of the first shard of each of 6 streams
    assert {t for t in scorer.templates if t} == {
        f'The {s} in {{label}} sentiment is: "{{text}}"' for s in ("sentence", "short review", "long review")}
    card = (out / "datacard.md").read_text()
    assert "Kept per length class: `sentence` " in card and "## Balance" in card


def test_until_kept_with_lengths(tmp_path):
    cfg = cfg_for(*LENGTHS, "relabel.until_kept=true", "relabel.scoring_rule=verbalizer",
                  "generate.samples_per_label=6")  # the fake sampler has 11 keepable texts per label
    _, rel = synthesize(cfg, tmp_path, progress=False, sampler=BudgetSampler(), scorer=FakeScorer(cfg.labels))
    kept = Counter((r["prompt_label"], r["length"]) for r in Stage.load(rel).iter_rows() if r["keep"])
    quotas = {"sentence": 3, "short": 2, "long": 1}
    assert all(kept[(y, name)] >= quota for y in (0, 1) for name, quota in quotas.items())
    assert Stage.load(rel).manifest["targets_met"] is True


# ---------------------------------------------------------------- the balance check

def _row(prompt_label, label, keep):
    return {"prompt_label": prompt_label, "label": label, "keep": keep}


def test_prompt_balance_counts_keeps_and_flips():
    rows = ([_row(1, 1, True)] * 8 + [_row(1, 0, False)] * 2  # the positive prompt: 8 kept, 2 flipped
            + [_row(0, 0, True)] * 2 + [_row(0, 1, False)] * 6 + [_row(0, 0, False)] * 2)
    b = prompt_balance(rows, ("negative", "positive"))
    assert b["per_prompt_label"]["negative"] == {"generated": 10, "agree": 4, "flipped": 6, "kept": 2,
                                                 "flipped_share": 0.6, "kept_share": 0.2}
    assert b["per_prompt_label"]["positive"]["flipped"] == 2
    assert b["kept_pool"] == {"negative": 0.2, "positive": 0.8}
    assert b["judged"] == {"negative": 0.3, "positive": 0.7}
    assert b["imbalance"] == 4.0 and not b["balanced"]
    even = prompt_balance([_row(0, 0, True), _row(1, 1, True)], ("negative", "positive"))
    assert even["balanced"] and even["imbalance"] == 1.0 <= IMBALANCE_LIMIT
    none_kept = prompt_balance([_row(0, 1, True)], ("negative", "positive"))
    assert none_kept["imbalance"] is None and not none_kept["balanced"]


def test_relabel_records_and_shows_the_balance(tmp_path):
    cfg = cfg_for("relabel.scoring_rule=verbalizer", "generate.lengths=[]")
    gen = generate_stage(cfg, tmp_path, progress=False, sampler=FakeSampler())
    out = relabel_stage(cfg, tmp_path, gen, progress=False, scorer=FakeScorer(cfg.labels))
    st = Stage.load(out)
    balance = st.manifest["counts"]["balance"]
    assert balance == prompt_balance(st.iter_rows(), cfg.labels)
    assert sum(b["generated"] for b in balance["per_prompt_label"].values()) == st.manifest["counts"]["rows"]
    card = (out / "datacard.md").read_text()
    assert "## Balance" in card and "flipped (argmax another label)" in card and "Kept pool:" in card
    assert "Kept per length class" not in card
