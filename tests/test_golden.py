"""Golden values: stage fingerprints and derived seeds computed before the package was restructured.

Stage folders are named by fingerprint and every random draw comes from a derived seed, so these numbers
are what keeps existing work folders (and the results made from them) valid. If one of them changes, a
cached run would be recomputed, or a resumed one would diverge: change them only together with a stage's
version, on purpose.
"""

import hashlib
import shutil

import pytest

from unigen.config import load_config
from unigen.config.presets import tiny_run_settings
from unigen.evaluation.stage import evaluate_settings, identity_of
from unigen.pipeline import run_pipeline
from unigen.seeds import derive_seed, epoch_seed
from unigen.stages import fingerprint_of, stage_status
from unigen.synth.common import generate_fingerprint, relabel_fingerprint
from unigen.tam.stage import train_settings
from unigen.tam.train import split_indices
from unigen.weighting.stage import weight_settings

#: the defaults these folders were made with; later defaults differ (docs/configuration.md, "Defaults that
#: differ from the paper"), and a run that sets these values explicitly still finds its old folders
PREVIOUS_DEFAULTS = [
    "generate.samples_per_label=500", "generate.backend=transformers", "scoring.backend=transformers",
    "relabel.scoring_rule=auto", "relabel.centre_scores=null", "train.pooling=cls",
    "train.predict_max_length=null", "weight.hypergradient=double_backward", "weight.outer_epochs=50",
    "train.precision=fp32", "train.group_by_length=false", "run.tams=[lstm, minilm-l6]",
    "evaluate.limit=null", "generate.lengths=[]",
]
#: configs/quick.yaml sets its own outer epochs and task models
QUICK_PREVIOUS = [s for s in PREVIOUS_DEFAULTS[1:] if not s.startswith(("weight.outer_epochs", "run.tams"))]

GOLDEN = {
    "default": (
        (None, PREVIOUS_DEFAULTS),
        {
            "generate": "a2c2bb6f6aec",
            "relabel": "bdb2955af19f",
            "weight": "3dd445b1c38b",
            "train lstm": "0f40fbe8eae6",
            "evaluate lstm": "29284ff8afbb",
            "train minilm-l6": "31079bc3f238",
            "evaluate minilm-l6": "5c3642086bf1",
            "evaluate vader": "19b999594812",
            "evaluate prompt": "fa51510ca95b",
        },
    ),
    # the main job's folders before length classes became the default (results/main_run.md, runs/default)
    "one-prompt": (
        (None, ["generate.lengths=[]"]),
        {
            "generate": "d4090d5ae68f",
            "relabel": "37be26c34098",
            "weight": "8b3a5e7ca243",
            "train lstm": "104aa1063adc",
            "evaluate lstm": "7525bbffa830",
            "train mpnet-base": "6d46c9064d16",
            "evaluate mpnet-base": "b7e4cf077767",
            "evaluate vader": "aacddc05205e",
            "evaluate prompt": "dee8e2db10f9",
        },
    ),
    # the main job on today's defaults: the folders of results/frontier.md's length-prompt arm
    "lengths": (
        (None, []),
        {
            "generate": "26ba37e1e476",
            "relabel": "76528a0ba496",
            "weight": "d1979ef18a7f",
            "train lstm": "b21568514da4",
            "evaluate lstm": "76f272c4d705",
            "train mpnet-base": "9ec19c4fd2f2",
            "evaluate mpnet-base": "e47128de5d8f",
            "evaluate vader": "aacddc05205e",
            "evaluate prompt": "dee8e2db10f9",
        },
    ),
    "quick": (
        ("configs/quick.yaml", QUICK_PREVIOUS),
        {
            "generate": "0deb747c9aaa",
            "relabel": "a793a2310636",
            "weight": "0ba70442ae64",
            "train lstm": "a6cfde09c2f3",
            "evaluate lstm": "dfd323e2f35a",
            "evaluate vader": "19b999594812",
            "evaluate prompt": "fa51510ca95b",
        },
    ),
    "sungen-movie": (
        (None, [*PREVIOUS_DEFAULTS, "run.method=sungen", "run.domain=movie"]),
        {
            "generate": "eca978b56553",
            "relabel": "c3a5218e414f",
            "weight": "0da57b91aed8",
            "train lstm": "843f2d72ce06",
            "evaluate lstm": "dbe81a82e9f9",
            "train minilm-l6": "91fb56c7f5f0",
            "evaluate minilm-l6": "7bc7c5d60956",
            "evaluate vader": "19b999594812",
            "evaluate prompt": "fa51510ca95b",
        },
    ),
    "until-kept": (
        (None, [*PREVIOUS_DEFAULTS, "relabel.until_kept=true", "seed=3"]),
        {
            "generate": "8aa9335717b3",
            "relabel": "9330e1b56e30",
            "weight": "fc51263075b8",
            "train lstm": "d81e5e3f0c46",
            "evaluate lstm": "55b79762577a",
            "train minilm-l6": "e78e3b366b02",
            "evaluate minilm-l6": "f6c37228fdc0",
            "evaluate vader": "237803aec927",
            "evaluate prompt": "92ab7a85d6c2",
        },
    ),
    "ablation": (
        (None, [*PREVIOUS_DEFAULTS, "run.ablations=[no-scl, hard-relabel]", "evaluate.limit=1000",
                "generate.min_words=10"]),
        {
            "generate": "f2dce71d5836",
            "relabel": "6237f3aa2370",
            "weight": "412aae660400",
            "train lstm": "883c6cae00fb",
            "evaluate lstm": "726bc3988722",
            "train minilm-l6": "7b887853bea8",
            "evaluate minilm-l6": "cb1291d3f527",
            "evaluate vader": "aacddc05205e",
            "evaluate prompt": "fa51510ca95b",
        },
    ),
}


def fingerprints(cfg):
    """Every stage fingerprint of ``unigen run`` for ``cfg``, as the pipeline computes them."""
    out = {"generate": generate_fingerprint(cfg)}
    out["relabel"] = relabel_fingerprint(cfg, out["generate"])
    out["weight"] = fingerprint_of("weight", weight_settings(cfg), upstream={"relabel": out["relabel"]})
    for tam in cfg.run.tams:
        out[f"train {tam}"] = fingerprint_of(
            "train", train_settings(cfg, tam), upstream={"weight": out["weight"]}
        )
        out[f"evaluate {tam}"] = fingerprint_of("evaluate", evaluate_settings(
            cfg, {"train": out[f"train {tam}"]}, cfg.evaluate.limit))
    out["evaluate vader"] = fingerprint_of("evaluate", evaluate_settings(cfg, identity_of("vader", cfg),
                                                                         cfg.evaluate.limit))
    out["evaluate prompt"] = fingerprint_of("evaluate", evaluate_settings(
        cfg, identity_of(f"prompt:{cfg.generator}", cfg), cfg.run.prompt_limit))
    return out


@pytest.mark.parametrize("name", list(GOLDEN))
def test_stage_fingerprints_are_unchanged(name):
    (path, overrides), expected = GOLDEN[name]
    assert fingerprints(load_config(path, overrides)) == expected


def test_derived_seeds_are_unchanged():
    assert derive_seed(42, "generate", 0) == 5944981743824710724
    assert derive_seed(42, "generate", 7) == 2491517229065370956
    assert derive_seed(1, "datacard") == 1975148531775874575
    assert derive_seed(123456789, 5) == 4776689749618335472
    # SunGen's per-epoch streams and the trainer's per-epoch seeds (two functions before, one now)
    assert epoch_seed(42, 0, 0) == 2242280713608235703
    assert epoch_seed(42, 3, 1) == 1637421959180275900
    assert epoch_seed(1, 49, 2) == 4508587022154897702
    assert epoch_seed(7, 0, 12) == 2804285386260877719
    assert epoch_seed(42, 0, 1) == 6793198372087542132
    assert epoch_seed(42, 4, 1) == 3720942425617740058
    assert epoch_seed(3, 0, 3) == 6882722524116465617
    assert epoch_seed(-1, 2, 1) == 5855499487560437723


def test_validation_split_is_unchanged():
    def split(*args):
        return [a.tolist() for a in split_indices(*args)]

    assert split(10, 0.1, 42) == [[0, 1, 2, 3, 4, 5, 6, 7, 9], [8]]
    assert split(7, 0.3, 1) == [[0, 1, 2, 4, 5], [3, 6]]
    assert split(20, 0.25, -5) == [[1, 2, 3, 4, 5, 6, 7, 9, 10, 11, 13, 15, 17, 18, 19], [0, 8, 12, 14, 16]]


#: the stage folders of the tiny run below (relative paths, so the fingerprints do not depend on tmp_path)
TINY_FOLDERS = ["01_generate/c4f6d35ed86e", "02_relabel/3d672b42c950", "03_weight/124ef4482543",
                "04_train/473c2a5e1757", "05_evaluate/1f9a10cd4805", "05_evaluate/ea60da47b4c4"]

TINY_SHARDS = {
    "01_generate/c4f6d35ed86e/shards/shard-00000.jsonl": "14d68db966cb6f38",
    "01_generate/c4f6d35ed86e/shards/shard-00001.jsonl": "1d243dcf3359953c",
    "01_generate/c4f6d35ed86e/shards/shard-00002.jsonl": "ec53f8478a3204c1",
    "01_generate/c4f6d35ed86e/shards/shard-00003.jsonl": "ecfa968ea7267500",
    "02_relabel/3d672b42c950/shards/shard-00000.jsonl": "4cc0e9bca9549073",
    "02_relabel/3d672b42c950/shards/shard-00001.jsonl": "3a9ec1a68ac0c0d2",
    "02_relabel/3d672b42c950/shards/shard-00002.jsonl": "beaf3cb15471ad7d",
    "02_relabel/3d672b42c950/shards/shard-00003.jsonl": "6bab1d127023a6b0",
    "03_weight/124ef4482543/shards/shard-00000.jsonl": "baa1cdd57dd142d1",
}


def _digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def test_cached_tiny_run_is_reused_not_recomputed(tmp_path, tiny_lm_dir, labelled_jsonl, monkeypatch):
    """A tiny run lands in the golden folders with the golden rows; a second run reuses every stage."""
    monkeypatch.chdir(tmp_path)
    shutil.copytree(tiny_lm_dir, "tiny-gpt2")
    shutil.copy(labelled_jsonl, "data.jsonl")
    cfg = load_config(None, [*PREVIOUS_DEFAULTS[1:], *tiny_run_settings("tiny-gpt2", "data.jsonl")])
    rows = run_pipeline(cfg, "work", progress=False, log=lambda m: None)
    assert sorted(f"{s['stage']}/{s['fingerprint']}" for s in stage_status("work")) == TINY_FOLDERS
    shards = {str(p.relative_to(tmp_path / "work")): _digest(p)
              for p in sorted((tmp_path / "work").glob("0[1-3]*/*/shards/*.jsonl"))}
    assert shards == TINY_SHARDS  # the same generated, relabeled and weighted rows
    metrics = {name: {k: v for k, v in res["data"].items() if k != "seconds"} for name, res in rows.items()}
    assert metrics == {"UniGen lstm": {"accuracy": 0.25, "macro_f1": 0.2, "n": 4},
                       "VADER": {"accuracy": 1.0, "macro_f1": 1.0, "n": 4}}
    before = {str(m): m.read_text() for m in (tmp_path / "work").glob("*/*/manifest.json")}
    assert run_pipeline(cfg, "work", progress=False, log=lambda m: None) == rows
    after = {str(m): m.read_text() for m in (tmp_path / "work").glob("*/*/manifest.json")}
    assert after == before  # no stage was opened for writing, resumed or finished again
