"""Tests for the relabel stage: the math, the filter, rule choice, runner, resume, until_kept, CLI."""

from __future__ import annotations

import numpy as np
import pytest

from unigen.cli import main
from unigen.config import RelabelConfig, ScoringConfig, load_config
from unigen.errors import ConfigError
from unigen.stages import Stage
from unigen.synth.generate_stage import generate_stage
from unigen.synth.relabel_stage import relabel_stage
from unigen.synth.relabeling import (
    choose_rule,
    keep_mask,
    paper_binary_probs,
    relabel_arrays,
    score_rows,
    soft_labels,
)
from unigen.synth.scoring import FastLMScorer, LMScorer
from unigen.synth.stage import synthesize
from unigen.synth.until_kept import run_until_kept

from synth_fakes import FakeSampler, FakeScorer, Killed, tiny_gpt2, tiny_llama

# the auto rule (the previous default) is what most runner tests below exercise
BASE = ("generate.samples_per_label=8", "generate.shard_size=4", "relabel.scoring_rule=auto",
        "relabel.centre_scores=null", "generate.lengths=[]")  # one prompt: the counts below assume it


def cfg_for(*overrides: str):
    return load_config(None, [*BASE, *overrides])


# ---------------------------------------------------------------- math

def test_two_labels_equal_the_paper_formula():
    rng = np.random.default_rng(0)
    s = rng.normal(3.0, 0.5, size=(50, 2))
    ours = soft_labels(s, 0.1)
    assert np.allclose(ours, paper_binary_probs(s, 0.1))
    assert np.allclose(ours[:, 1], 1 / (1 + np.exp(-(s[:, 0] - s[:, 1]) / 0.1)))  # sigma((L_neg - L_pos)/tau)
    assert np.allclose(soft_labels(s + 100.0, 0.1), ours)  # shift invariant, no overflow


def test_three_labels():
    s = np.array([[1.0, 2.0, 3.0], [0.5, 0.5, 0.5], [3.0, 0.0, 3.0]])
    p = soft_labels(s, 1.0)
    assert np.allclose(p.sum(1), 1) and p[0].argmax() == 0 and np.allclose(p[1], 1 / 3) and p[2].argmax() == 1
    assert np.allclose(p[0], np.exp([-1.0, -2.0, -3.0]) / np.exp([-1.0, -2.0, -3.0]).sum())
    keep = keep_mask(p, np.array([0, 0, 1]), threshold=0.2)  # bar = 1/3 + 0.2
    assert keep.tolist() == [p[0, 0] > 0.5333, False, True]
    with pytest.raises(ValueError):
        paper_binary_probs(s, 0.1)


def test_thresholds_filter_as_specified():
    probs = np.array([[0.69, 0.31], [0.71, 0.29], [0.2, 0.8], [0.2, 0.8], [0.7, 0.3]])
    y = np.array([0, 0, 0, 1, 0])
    assert keep_mask(probs, y, 0.2).tolist() == [False, True, False, True, False]  # p_y > 0.7 strictly
    assert keep_mask(probs, y, 0.2, drop_disagreeing=False).tolist() == [False, True, True, True, False]
    assert keep_mask(probs, y, 0.0).tolist() == [True, True, False, True, True]


def test_modes():
    scores = np.array([[0.0, 1.0], [1.0, 0.0], [0.0, 0.01]])
    y = [0, 0, 1]
    soft = relabel_arrays(scores, y, 2, RelabelConfig(mode="soft"))
    assert np.allclose(soft["probs"], soft_labels(scores, 0.1)) and soft["keep"].tolist() == [
        True,
        False,
        False,
    ]
    assert soft["label"].tolist() == [0, 1, 0]
    hard = relabel_arrays(scores, y, 2, RelabelConfig(mode="hard"))
    assert (
        hard["probs"].tolist() == [[1, 0], [0, 1], [1, 0]] and hard["keep"].tolist() == soft["keep"].tolist()
    )
    none = relabel_arrays(None, y, 2, RelabelConfig(mode="none"))
    assert none["probs"].tolist() == [[1, 0], [1, 0], [0, 1]] and none["keep"].all()


def test_rule_choice_and_domain_templates():
    rows = [{"text": f"so {w}", "prompt_label": k, "domain": d}
            for k, w in enumerate(("negative", "positive")) for d in ("movie", "tweet")]
    scorer = FakeScorer(("negative", "positive"))
    choice = choose_rule(scorer, rows)
    assert choice == {"rule": "verbalizer", "centred": False, "offset": [0.0, 0.0],
                      "agreement": {"nll": 0.0, "verbalizer": 1.0}, "sample_size": 4}
    assert 'The movie review in {label} sentiment is: "{text}"' in scorer.templates
    assert 'The tweet in {label} sentiment is: "{text}"' in scorer.templates
    tie = choose_rule(FakeScorer(("negative", "positive"), invert_nll=False), rows)
    assert tie["rule"] == "nll"  # ties go to the paper's rule
    with pytest.raises(ValueError, match="unknown scoring rule"):
        score_rows(scorer, rows, "logits")


class BiasedScorer:
    """Ranks texts correctly but calls (almost) everything positive, like the paper's rule with SmolLM2."""

    def scores(self, texts, rule="nll", template=None, progress=False):
        good = np.array([1.0 if "great" in t else 0.0 for t in texts])
        return np.stack([1.5 + 0.5 * good, 1.0 + 0.0 * good], axis=1)  # positive always wins raw


def test_centring_removes_a_label_bias_without_real_labels():
    rows = [{"text": w, "prompt_label": k, "domain": "universal"}
            for k, w in ((0, "awful"), (0, "meh"), (1, "great"), (1, "great fun"))]
    raw = choose_rule(BiasedScorer(), rows, rules=("nll",), centre=False)
    assert raw["agreement"] == {"nll": 0.5}
    auto = choose_rule(BiasedScorer(), rows, rules=("nll",), centre=None)
    assert auto["centred"] and auto["agreement"] == {"nll": 0.5, "nll centred": 1.0}
    np.testing.assert_allclose(auto["offset"], [1.75, 1.0])  # per-label means of the sample


@pytest.mark.parametrize("make", [tiny_llama, tiny_gpt2])
def test_fast_scorer_equals_lm_scorer(make):
    model, tok = make()
    texts = ["good movie", "bad food and a very long tail of words here", "ok"]
    cfg = ScoringConfig(batch_size=2)
    labels = ("negative", "positive")
    ref, fast = LMScorer(model, tok, labels, cfg), FastLMScorer(model, tok, labels, cfg)
    for rule in ("verbalizer", "nll"):
        assert np.allclose(fast.scores(texts, rule=rule), ref.scores(texts, rule=rule), atol=1e-5)


# ---------------------------------------------------------------- runner

def test_relabel_stage_end_to_end(tmp_path):
    cfg = cfg_for()
    gen = generate_stage(cfg, tmp_path, progress=False, sampler=FakeSampler())
    out = relabel_stage(cfg, tmp_path, gen, progress=False, scorer=FakeScorer(cfg.labels))
    st = Stage.load(out, "relabel")
    rows = list(st.iter_rows())
    assert len(rows) == 16 and all({"probs", "label", "confidence", "keep", "scores"} <= set(r) for r in rows)
    assert all(abs(sum(r["probs"]) - 1) < 1e-5 for r in rows)
    assert st.manifest["upstream"] == {"generate": Stage.load(gen).fingerprint}
    assert st.manifest["rule"] == "verbalizer" and st.manifest["rule_choice"]["agreement"]["nll"] == 0.0
    assert 0 < st.manifest["counts"]["kept"] < 16  # the weak '#' rows fall below T_RE
    card = (out / "datacard.md").read_text()
    for part in (
        "## Counts",
        "acceptance",
        "distinct_2",
        "Agreement of each rule",
        "nll 0.0%",
        "### negative",
        "[1.00, 0.00]",
    ):
        assert part in card
    assert (
        relabel_stage(cfg, tmp_path, gen, progress=False, scorer=FakeScorer(cfg.labels, fail_after=0)) == out
    )


def test_three_labels_end_to_end(tmp_path):
    cfg = cfg_for("labels=[negative, neutral, positive]", "relabel.scoring_rule=verbalizer")
    gen = generate_stage(cfg, tmp_path, progress=False, sampler=FakeSampler())
    st = Stage.load(relabel_stage(cfg, tmp_path, gen, progress=False, scorer=FakeScorer(cfg.labels)))
    rows = list(st.iter_rows())
    assert len(rows) == 24 and all(len(r["probs"]) == 3 for r in rows)
    assert set(st.manifest["counts"]["kept_per_label"]) == {"negative", "neutral", "positive"}
    assert all(r["probs"][r["prompt_label"]] > 1 / 3 + 0.2 for r in rows if r["keep"])
    assert "### neutral" in (st.path / "datacard.md").read_text()


def test_relabel_kill_and_resume(tmp_path):
    cfg = cfg_for("relabel.scoring_rule=nll", "relabel.mode=hard")
    gen = generate_stage(cfg, tmp_path, progress=False, sampler=FakeSampler())
    ref = list(Stage.load(relabel_stage(cfg, tmp_path / "a", gen, progress=False,
                                        scorer=FakeScorer(cfg.labels, invert_nll=False))).iter_rows())
    with pytest.raises(Killed):
        relabel_stage(
            cfg, tmp_path / "b", gen, progress=False, scorer=FakeScorer(cfg.labels, 2, invert_nll=False)
        )
    out = relabel_stage(
        cfg, tmp_path / "b", gen, progress=False, scorer=FakeScorer(cfg.labels, invert_nll=False)
    )
    assert list(Stage.load(out).iter_rows()) == ref and all(set(r["probs"]) <= {0.0, 1.0} for r in ref)


def test_mode_none_needs_no_model(tmp_path):
    cfg = cfg_for("relabel.mode=none")
    gen = generate_stage(cfg, tmp_path, progress=False, sampler=FakeSampler())
    st = Stage.load(relabel_stage(cfg, tmp_path, gen, progress=False))
    assert st.manifest["counts"]["kept"] == 16 and st.manifest["rule"] == "none"


def test_default_rule_is_the_calibrated_verbalizer(tmp_path):
    """No centring by default: no auto sample is scored, the content-free calibrated scores label rows."""
    cfg = load_config(None, BASE[:2])
    assert (cfg.relabel.scoring_rule, cfg.relabel.centre_scores, cfg.scoring.calibrate) == (
        "verbalizer", False, True)
    gen = generate_stage(cfg, tmp_path, progress=False, sampler=FakeSampler())
    out = relabel_stage(cfg, tmp_path, gen, progress=False, scorer=FakeScorer(cfg.labels))
    manifest = Stage.load(out, "relabel").manifest
    assert manifest["rule"] == "verbalizer" and manifest["rule_choice"] == {"rule": "verbalizer"}


def test_centred_verbalizer_scores_only_the_auto_sample_for_its_offset(tmp_path):
    cfg = load_config(None, [*BASE[:2], "generate.lengths=[]", "relabel.centre_scores=true"])
    gen = generate_stage(cfg, tmp_path, progress=False, sampler=FakeSampler())
    scorer = FakeScorer(cfg.labels)
    out = relabel_stage(cfg, tmp_path, gen, progress=False, scorer=scorer)
    choice = Stage.load(out, "relabel").manifest["rule_choice"]
    assert choice["rule"] == "verbalizer" and choice["centred"] and choice["how"] == "config"
    assert list(choice["agreement"]) == ["verbalizer centred"]  # the nll rule is never scored
    sample = [r for r in Stage.load(gen).iter_rows() if r["shard"] in (0, 1)]  # shards 0..streams-1
    offset = score_rows(scorer, sample, "verbalizer").mean(axis=0)
    np.testing.assert_allclose(choice["offset"], offset, atol=1e-6)


def test_until_kept_reaches_targets_and_resumes(tmp_path):
    cfg = cfg_for("relabel.until_kept=true")
    gen, rel = run_until_kept(
        cfg, tmp_path / "a", False, sampler=FakeSampler(), scorer=FakeScorer(cfg.labels)
    )
    kept = Stage.load(rel).manifest["counts"]["kept_per_label"]
    assert min(kept.values()) >= 8 and Stage.load(rel).manifest["targets_met"] is True
    ref = list(Stage.load(rel).iter_rows())
    for fail in (2, 4):
        with pytest.raises(Killed):
            run_until_kept(
                cfg, tmp_path / "b", False, sampler=FakeSampler(), scorer=FakeScorer(cfg.labels, fail)
            )
    _, rel_b = run_until_kept(
        cfg, tmp_path / "b", False, sampler=FakeSampler(), scorer=FakeScorer(cfg.labels)
    )
    assert list(Stage.load(rel_b).iter_rows()) == ref
    assert synthesize(cfg, tmp_path / "a", progress=False) == (gen, rel)  # the pipeline's entry point agrees
    with pytest.raises(ConfigError, match="synthesize"):
        relabel_stage(cfg, tmp_path / "a", progress=False)


@pytest.mark.parametrize("damaged", ["01_generate", "02_relabel"])
def test_until_kept_recomputes_a_damaged_folder_to_the_same_rows(tmp_path, capsys, damaged):
    cfg = cfg_for("relabel.until_kept=true")
    _, rel = run_until_kept(cfg, tmp_path, False, sampler=FakeSampler(), scorer=FakeScorer(cfg.labels))
    ref = list(Stage.load(rel).iter_rows())
    (shard,) = (tmp_path / damaged).glob("*/shards/shard-00002.jsonl")
    shard.write_bytes(shard.read_bytes()[:-10])
    capsys.readouterr()
    _, rel = run_until_kept(cfg, tmp_path, False, sampler=FakeSampler(), scorer=FakeScorer(cfg.labels))
    err = capsys.readouterr().err
    assert err.count("unigen: warning:") == 1 and "shard-00002.jsonl does not match its sha256" in err
    assert list(Stage.load(rel).iter_rows()) == ref


def test_until_kept_gives_up_with_a_warning(tmp_path):
    cfg = cfg_for("relabel.until_kept=true", "relabel.scoring_rule=nll", "relabel.max_generated_factor=2")
    with pytest.warns(UserWarning, match="targets unmet"):
        _, rel = run_until_kept(cfg, tmp_path, False, sampler=FakeSampler(), scorer=FakeScorer(cfg.labels))
    assert Stage.load(rel).manifest["targets_met"] is False


def test_cli_commands_with_a_tiny_model_on_disk(tmp_path, capsys, saved_llama):
    settings = [
        x
        for o in ("generate.lengths=[]", "generate.max_new_tokens=6", f"generator={saved_llama}",
                  "relabel.auto_sample=8", *BASE)
        for x in ("--set", o)
    ]
    assert main(["generate", "--workdir", str(tmp_path / "w"), "--no-progress", *settings]) == 0
    gen = next((tmp_path / "w" / "01_generate").iterdir())
    assert main(["relabel", "--input", str(gen), "--quiet", *settings]) == 0
    assert "relabel complete" in capsys.readouterr().out
    rel = next((tmp_path / "w" / "02_relabel").iterdir())
    assert Stage.load(rel).manifest["rule_choice"]["sample_size"] == 8
    other = ["--set", "labels=[bad, good]"]
    assert main(["relabel", "--input", str(gen), "--output", str(tmp_path / "x"), *settings, *other]) == 2
    assert "labels" in capsys.readouterr().err


def test_pipeline_reads_the_relabeled_rows(tmp_path, saved_llama):
    from unigen.stages import iter_stage_rows
    from unigen.weighting.stage import training_rows

    cfg = cfg_for("generate.lengths=[]", "generate.max_new_tokens=6", f"generator={saved_llama}",
                  "relabel.scoring_rule=verbalizer")
    _, rel = synthesize(cfg, tmp_path, progress=False)
    rows = training_rows(iter_stage_rows(rel, "relabel"), cfg.relabel.mode)
    kept = Stage.load(rel).manifest["counts"]["kept"]
    assert len(rows) == kept and all(len(r["probs"]) == 2 and r["label"] in (0, 1) for r in rows)
