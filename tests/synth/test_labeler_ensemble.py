"""The labeler ensemble (``relabel.labelers``) and the verbalizer's prompt variants
(``scoring.verbalizer_extra_*``): the combination math on known inputs, the defaults left exactly as before,
the config errors, the variant scores against separate single-prompt scorers, and the relabel stage with two
labelers end to end, resumed after a kill between the labelers."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from unigen.config import ScoringConfig, load_config
from unigen.errors import ConfigError
from unigen.stages import Stage
from unigen.synth import backends
from unigen.synth.common import relabel_settings
from unigen.synth.generate_stage import generate_stage
from unigen.synth.labeler_ensemble import LabelerEnsemble, cache_folder_name, combine_scores
from unigen.synth.relabel_stage import LABELER_CACHE, relabel_stage
from unigen.synth.relabeling import relabel_rows, soft_labels
from unigen.synth.scoring import LMScorer
from unigen.synth.until_kept import run_until_kept

from synth_fakes import FakeSampler, FakeScorer, Killed

BASE = ("generate.samples_per_label=8", "generate.shard_size=4", "generate.lengths=[]")  # one prompt
LABELER = "tiny-labeler"


def cfg_for(*overrides: str):
    return load_config(None, [*BASE, *overrides])


# ---------------------------------------------------------------- combination math

def test_mean_logprob_is_the_weighted_mean_of_the_scores():
    s1, s2 = np.array([[0.0, 1.0], [3.0, -1.0]]), np.array([[2.0, 0.0], [1.0, 1.0]])
    np.testing.assert_allclose(combine_scores([s1, s2], [1, 1], "mean_logprob", 0.1),
                               [[1.0, 0.5], [2.0, 0.0]])
    np.testing.assert_allclose(combine_scores([s1, s2], [1, 3], "mean_logprob", 0.1),
                               [[1.5, 0.25], [1.5, 0.5]])


def test_mean_logprob_soft_labels_are_the_normalised_geometric_mean():
    rng = np.random.default_rng(0)
    s = [rng.normal(size=(5, 3)) for _ in range(3)]
    w, tau = np.array([1.0, 2.0, 0.5]), 0.3
    geo = np.prod([soft_labels(x, tau) ** (wj / w.sum()) for x, wj in zip(s, w)], axis=0)
    np.testing.assert_allclose(soft_labels(combine_scores(s, w, "mean_logprob", tau), tau),
                               geo / geo.sum(axis=1, keepdims=True))


def test_mean_prob_gives_back_the_mean_of_the_soft_labels():
    s1, s2 = np.array([[0.0, 1.0]]), np.array([[2.0, 0.0]])
    p1 = [1 / (1 + math.exp(-1)), math.exp(-1) / (1 + math.exp(-1))]  # softmax(-S / 1)
    p2 = [math.exp(-2) / (1 + math.exp(-2)), 1 / (1 + math.exp(-2))]
    combined = combine_scores([s1, s2], [1, 1], "mean_prob", 1.0)
    want = [(p1[0] + p2[0]) / 2, (p1[1] + p2[1]) / 2]
    np.testing.assert_allclose(soft_labels(combined, 1.0), [want])
    np.testing.assert_allclose(combined, -np.log([want]))  # S = -tau log p
    weighted = soft_labels(combine_scores([s1, s2], [3, 1], "mean_prob", 1.0), 1.0)
    np.testing.assert_allclose(weighted, [[(3 * p1[0] + p2[0]) / 4, (3 * p1[1] + p2[1]) / 4]])


def test_mean_prob_stays_finite_when_every_lm_is_certain():
    s = [np.array([[0.0, 500.0]]), np.array([[0.0, 900.0]])]
    combined = combine_scores(s, [1, 1], "mean_prob", 0.1)  # p_1 = (e^-5000 + e^-9000) / 2, no underflow
    np.testing.assert_allclose(combined, [[0.0, 500.0 + 0.1 * math.log(2)]], atol=1e-9)


@pytest.mark.parametrize("rule", ["mean_logprob", "mean_prob"])
def test_one_lm_or_zero_weights_change_nothing(rule):
    rng = np.random.default_rng(1)
    s, other = rng.normal(size=(4, 2)), rng.normal(size=(4, 2))
    np.testing.assert_allclose(soft_labels(combine_scores([s], [1], rule, 0.1), 0.1), soft_labels(s, 0.1))
    np.testing.assert_allclose(soft_labels(combine_scores([s, other], [2, 0], rule, 0.1), 0.1),
                               soft_labels(s, 0.1))


def test_combination_errors():
    with pytest.raises(ValueError, match="unknown combination rule"):
        combine_scores([np.zeros((1, 2))], [1], "max", 0.1)
    with pytest.raises(ValueError, match="one weight per"):
        combine_scores([np.zeros((1, 2))], [1, 1], "mean_prob", 0.1)


# ---------------------------------------------------------------- the ensemble object

class Contrarian(FakeScorer):
    """A labeler that disagrees with :class:`FakeScorer` on texts holding 'movie' (at half its scale)."""

    def scores(self, texts, *, rule=None, template=None, progress=False):
        out = super().scores(texts, rule=rule, template=template, progress=progress) * 0.5
        flip = np.array(["movie" in t for t in texts])
        out[flip] = out[flip][:, ::-1]
        return out


def never_built():
    raise AssertionError("this labeler should not be loaded")


def test_ensemble_caches_each_lm_and_builds_lms_lazily(tmp_path):
    labels = ("negative", "positive")
    gen, other = FakeScorer(labels), Contrarian(labels)
    texts = ["good movie positive", "bad food negative"]
    ens = LabelerEnsemble([("gen", gen), ("other", lambda: other), ("off", never_built)],
                          weights=(1, 1, 0), cache_dir=tmp_path / "cache")
    assert ens.active == ("gen", "other")
    parts = ens.member_scores(texts)
    np.testing.assert_allclose(parts["other"], other.scores(texts, rule="verbalizer"))
    np.testing.assert_allclose(ens.scores(texts), (parts["gen"] + parts["other"]) / 2)
    assert (tmp_path / "cache" / cache_folder_name("other")).is_dir() and gen.calls == 1
    again = LabelerEnsemble([("gen", never_built), ("other", never_built), ("off", never_built)],
                            weights=(1, 1, 0), cache_dir=tmp_path / "cache")
    np.testing.assert_allclose(again.scores(texts), ens.scores(texts))  # all from the cache
    with pytest.raises(ValueError, match="verbalizer rule only"):
        ens.scores(texts, rule="nll")
    assert "/" not in cache_folder_name("/models/org/lm")
    assert cache_folder_name("a/b") != cache_folder_name("a_b")


# ---------------------------------------------------------------- config and defaults

def test_config_errors_are_one_line():
    for overrides, message in [
        (["relabel.labelers=[x]", "relabel.scoring_rule=nll"], "needs relabel.scoring_rule=verbalizer"),
        (["relabel.labelers=[x]", "relabel.scoring_rule=auto"], "needs relabel.scoring_rule=verbalizer"),
        (["relabel.labelers=[x, x]"], "must differ"),
        (["relabel.labelers=[smollm2-135m]"], "must differ"),
        (["relabel.labelers=[x]", "relabel.labeler_weights=[1]"], "one weight per LM"),
        (["relabel.labelers=[x]", "relabel.labeler_weights=[0, 0]"], "positive sum"),
        (["relabel.labelers=[x]", "relabel.labeler_weights=[1, heavy]"], "must be a number"),
        (["relabel.combine=max"], "relabel.combine must be one of"),
        (["scoring.verbalizer_extra_label_words=[bad|good|fine]"], "needs 2 distinct words"),
        (["scoring.verbalizer_extra_label_words=[good|good]"], "needs 2 distinct words"),
        (["scoring.verbalizer_extra_templates=[no placeholder]"], "need {text}"),
    ]:
        with pytest.raises(ConfigError, match=message) as err:
            load_config(None, overrides)
        assert "\n" not in str(err.value)


def test_new_settings_at_their_defaults_keep_every_fingerprint():
    default = load_config(None)
    explicit = load_config(None, ["relabel.labelers=[]", "relabel.combine=mean_logprob",
                                  "relabel.labeler_weights=[]", "scoring.verbalizer_extra_templates=[]",
                                  "scoring.verbalizer_extra_label_words=[]"])
    assert relabel_settings(explicit) == relabel_settings(default)
    keys = {*relabel_settings(default)["relabel"], *relabel_settings(default)["scoring"]}
    assert not keys & {"labelers", "combine", "labeler_weights", "verbalizer_extra_templates",
                       "verbalizer_extra_label_words"}
    for changed in (["relabel.labelers=[x]"], ["scoring.verbalizer_extra_label_words=[bad|good]"],
                    ["relabel.labelers=[x]", "relabel.combine=mean_prob"]):
        assert relabel_settings(load_config(None, changed)) != relabel_settings(default)


def test_default_rows_are_the_plain_scorers(tmp_path):
    """No labelers: the stage scores with the given scorer alone and writes exactly the rows of before."""
    cfg = cfg_for()
    gen = Stage.load(generate_stage(cfg, tmp_path, progress=False, sampler=FakeSampler()))
    st = Stage.load(relabel_stage(cfg, tmp_path, gen.path, progress=False, scorer=FakeScorer(cfg.labels)))
    for i in gen.shard_indices():
        rows = gen.read_shard(i)
        scores = FakeScorer(cfg.labels).scores([r["text"] for r in rows], rule="verbalizer")
        assert st.read_shard(i) == relabel_rows(rows, scores, 2, cfg.relabel)
    assert not {"labelers", "verbalizer_variants"} & set(st.manifest)
    assert "labeler_agreement" not in st.manifest["counts"]
    assert "Labelers" not in (st.path / "datacard.md").read_text()


# ---------------------------------------------------------------- verbalizer prompt variants

def test_variants_average_the_single_prompt_scores(tiny_lm_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_lm_dir).eval()
    tok = AutoTokenizer.from_pretrained(tiny_lm_dir)
    texts = ["i love this movie", "awful", "it was not very good really . it was bad", "great fun film !"]
    labels = ("negative", "positive")
    base = ScoringConfig(rule="verbalizer", batch_size=3)
    extra = "{text}\nThis review is"
    config = dataclasses.replace(base, verbalizer_extra_templates=(extra,),
                                 verbalizer_extra_label_words=("bad|good", "terrible | great"))
    got = LMScorer(model, tok, labels, config).scores(texts)
    singles = [LMScorer(model, tok, words, dataclasses.replace(base, verbalizer_template=t)).scores(texts)
               for t in (base.verbalizer_template, extra)
               for words in (labels, ("bad", "good"), ("terrible", "great"))]
    np.testing.assert_allclose(got, np.mean(singles, axis=0), atol=1e-6)
    plain = dataclasses.replace(base, calibrate=False, verbalizer_extra_label_words=("bad|good",))
    uncalibrated = [LMScorer(model, tok, w, dataclasses.replace(plain, verbalizer_extra_label_words=()))
                    .scores(texts) for w in (labels, ("bad", "good"))]
    np.testing.assert_allclose(LMScorer(model, tok, labels, plain).scores(texts), np.mean(uncalibrated, 0),
                               atol=1e-6)
    shared = dataclasses.replace(base, verbalizer_extra_label_words=("zzfoo|zzbar",))  # both <unk>
    with pytest.raises(ValueError, match="share their first token"):
        LMScorer(model, tok, labels, shared).scores(texts)


# ---------------------------------------------------------------- the stage with two labelers

@pytest.fixture()
def fake_labelers(monkeypatch):
    """``make_scorer`` builds a :class:`Contrarian` for the labeler ``LABELER``; records what it built."""
    built: list[Contrarian] = []

    def make(cfg, lm=None, scoring=None, *, generator=None):
        assert generator == LABELER
        built.append(Contrarian(cfg.labels, fail_after=make.fail_after))
        return built[-1]

    make.fail_after = None
    monkeypatch.setattr(backends, "make_scorer", make)
    return make, built


def test_two_labelers_end_to_end(tmp_path, fake_labelers):
    cfg = cfg_for(f"relabel.labelers=[{LABELER}]")
    gen = generate_stage(cfg, tmp_path, progress=False, sampler=FakeSampler())
    st = Stage.load(relabel_stage(cfg, tmp_path, gen, progress=False, scorer=FakeScorer(cfg.labels)))
    rows = list(st.iter_rows())
    assert len(rows) == 16 and all(set(r["labeler_scores"]) == {cfg.generator, LABELER} for r in rows)
    for r in rows:
        want = np.mean([r["labeler_scores"][cfg.generator], r["labeler_scores"][LABELER]], axis=0)
        np.testing.assert_allclose(r["scores"], want, atol=1e-6)
    flipped = [r for r in rows if "movie" in r["text"] and "#" not in r["text"]]
    assert flipped and all(max(r["probs"]) < 0.95 for r in flipped)  # the LMs disagree there
    m = st.manifest
    assert m["labelers"] == {"names": [cfg.generator, LABELER], "combine": "mean_logprob",
                             "weights": [1.0, 1.0]}
    assert set(m["counts"]["labeler_agreement"]) == {cfg.generator, LABELER}
    assert m["counts"]["labeler_agreement"][cfg.generator] > m["counts"]["labeler_agreement"][LABELER]
    assert not (st.path / LABELER_CACHE).exists() and Stage.load(st.path).problems() == []
    card = (st.path / "datacard.md").read_text()
    assert (f"Labelers: `{cfg.generator}` (weight 1), `{LABELER}` (weight 1), combined by `mean_logprob`"
            in card)
    assert "Agreement of each labeler's argmin" in card


def test_mean_prob_and_weights_reach_the_rows(tmp_path, fake_labelers):
    cfg = cfg_for(f"relabel.labelers=[{LABELER}]", "relabel.combine=mean_prob",
                  "relabel.labeler_weights=[3, 1]")
    gen = generate_stage(cfg, tmp_path, progress=False, sampler=FakeSampler())
    st = Stage.load(relabel_stage(cfg, tmp_path, gen, progress=False, scorer=FakeScorer(cfg.labels)))
    for r in st.iter_rows():
        ps = [soft_labels(np.array([r["labeler_scores"][n]]), 0.1)[0] for n in (cfg.generator, LABELER)]
        np.testing.assert_allclose(r["probs"], (3 * ps[0] + ps[1]) / 4, atol=1e-5)
    assert st.manifest["labelers"]["weights"] == [3.0, 1.0]


def test_a_kill_between_labelers_rescores_only_the_unfinished_ones(tmp_path, fake_labelers):
    make, built = fake_labelers
    cfg = cfg_for(f"relabel.labelers=[{LABELER}]")
    gen = generate_stage(cfg, tmp_path, progress=False, sampler=FakeSampler())
    ref = list(Stage.load(relabel_stage(cfg, tmp_path / "a", gen, progress=False,
                                        scorer=FakeScorer(cfg.labels))).iter_rows())
    make.fail_after = 1  # shard 0 by both LMs; shard 1: the generator's scores cached, then the labeler dies
    with pytest.raises(Killed):
        relabel_stage(cfg, tmp_path / "b", gen, progress=False, scorer=FakeScorer(cfg.labels))
    folder = next((tmp_path / "b" / "02_relabel").iterdir())
    assert len(list((folder / LABELER_CACHE).rglob("*.npy"))) == 3  # generator: shards 0, 1; labeler: 0
    make.fail_after = None
    again = FakeScorer(cfg.labels)
    out = relabel_stage(cfg, tmp_path / "b", gen, progress=False, scorer=again)
    assert list(Stage.load(out).iter_rows()) == ref
    assert again.calls == 2 and built[-1].calls == 3  # shards 2-3 | shards 1-3
    assert not (out / LABELER_CACHE).exists()


def test_until_kept_with_a_labeler(tmp_path, fake_labelers):
    cfg = cfg_for(f"relabel.labelers=[{LABELER}]", "relabel.until_kept=true")
    _, rel = run_until_kept(cfg, tmp_path, progress=False, sampler=FakeSampler(),
                            scorer=FakeScorer(cfg.labels))
    st = Stage.load(rel)
    assert all(LABELER in r["labeler_scores"] for r in st.iter_rows()) and st.manifest["labelers"]


def test_a_real_tiny_labeler_next_to_a_fake_generator(tmp_path, saved_llama):
    """The labeler is loaded by path on the transformers backend, with prompt variants."""
    cfg = cfg_for(f"relabel.labelers=[{saved_llama}]", "scoring.backend=transformers",
                  "scoring.verbalizer_extra_label_words=[bad|good]")
    gen = generate_stage(cfg, tmp_path, progress=False, sampler=FakeSampler())
    st = Stage.load(relabel_stage(cfg, tmp_path, gen, progress=False, scorer=FakeScorer(cfg.labels)))
    rows = list(st.iter_rows())
    assert len(rows) == 16 and all(len(r["labeler_scores"][str(saved_llama)]) == 2 for r in rows)
    assert st.manifest["verbalizer_variants"]["label_words"] == [list(cfg.labels), ["bad", "good"]]
    assert "2 label-word sets" in (st.path / "datacard.md").read_text()
