"""The whole pipeline on tiny models: runs, skips every stage on a second run, forks on a changed setting."""

import json
import os
from pathlib import Path

from unigen.cli import main
from unigen.config import load_config
from unigen.config.presets import tiny_run_settings
from unigen.pipeline import run_pipeline
from unigen.stages import stage_status


def tiny_config(tiny_lm_dir, labelled_jsonl, *extra):
    return load_config(None, tiny_run_settings(tiny_lm_dir, labelled_jsonl, *extra))


def test_run_skip_and_fork(tmp_path, tiny_lm_dir, labelled_jsonl):
    work = tmp_path / "work"
    cfg = tiny_config(tiny_lm_dir, labelled_jsonl)
    rows = run_pipeline(cfg, work, progress=False, log=lambda m: None)
    assert list(rows) == ["UniGen lstm", "VADER"]
    evaluation = json.loads((work / "evaluation.json").read_text())
    assert set(evaluation) == {"custom", "average"} and evaluation["custom"]["n"] == 4
    first = {s["path"] for s in stage_status(work)}
    assert all(s["status"] == "complete" for s in stage_status(work)) and len(first) == 6
    model = json.loads((work / "run.json").read_text())["stages"]["model lstm"]  # where the product lies
    assert (
        (work / "04_train").is_dir() and model.startswith(str(work / "04_train")) and model.endswith("/model")
    )
    assert (Path(model) / "unigen_tam.json").is_file()
    # train.tam (mpnet-base) is not among run.tams here, so the product row is the first task model
    assert json.loads((work / "run.json").read_text())["model"] == model

    log = []
    assert run_pipeline(cfg, work, progress=False, log=log.append) == rows  # everything cached
    assert {s["path"] for s in stage_status(work)} == first
    assert [m.split("]")[0] + "]" for m in log] == ["[generate+relabel]", "[weight]", "[train lstm]",
                                                    "[evaluate lstm]", "[evaluate vader]"]

    changed = tiny_config(tiny_lm_dir, labelled_jsonl, "train.epochs=2")
    run_pipeline(changed, work, progress=False, log=lambda m: None)
    stages = stage_status(work)
    assert first < {s["path"] for s in stages}  # old folders kept, new ones added
    assert [s["stage"] for s in stages].count("01_generate") == 1  # upstream stages reused
    assert [s["stage"] for s in stages].count("04_train") == 2


def test_status_cli(tmp_path, capsys):
    assert main(["status", "--workdir", str(tmp_path)]) == 1
    assert "no stages" in capsys.readouterr().out


def test_quiet_silences_library_progress_bars(tmp_path, monkeypatch):
    monkeypatch.delenv("HF_HUB_DISABLE_PROGRESS_BARS", raising=False)
    missing = tmp_path / "missing.yaml"
    assert main(["experiment", str(missing), "--quiet"]) == 2  # fails cleanly, after reading --quiet
    assert os.environ.get("HF_HUB_DISABLE_PROGRESS_BARS") == "1"


def test_stage_commands_chain_into_the_folders_of_run(tmp_path, tiny_lm_dir, labelled_jsonl, capsys):
    """generate -> relabel -> weight -> train -> evaluate, each reading the previous folder, write exactly the
    folders `unigen run` writes: the run afterwards reuses every one of them."""
    work = tmp_path / "work"
    cfg = tiny_config(tiny_lm_dir, labelled_jsonl)
    sets = [x for s in tiny_run_settings(tiny_lm_dir, labelled_jsonl, "train.tam=lstm") for x in ("--set", s)]

    def only(stage):
        (folder,) = (work / stage).iterdir()
        return str(folder)

    assert main(["generate", "--workdir", str(work), "--quiet", *sets]) == 0
    assert main(["relabel", "--input", only("01_generate"), "--quiet", *sets]) == 0
    assert main(["weight", "--data", only("02_relabel"), "--quiet", *sets]) == 0
    assert main(["train", "--data", only("03_weight"), "--quiet", *sets]) == 0
    assert main(["evaluate", "--model", only("04_train"), "--workdir", str(work), "--quiet", *sets]) == 0
    capsys.readouterr()
    before = {str(m): m.read_text() for m in work.glob("*/*/manifest.json")}
    assert len(before) == 5
    run_pipeline(cfg, work, progress=False, log=lambda m: None)
    after = {str(m): m.read_text() for m in work.glob("*/*/manifest.json")}
    assert {k: after[k] for k in before} == before  # reused as they are
    assert [Path(k).parts[-3] for k in set(after) - set(before)] == ["05_evaluate"]  # only VADER is new


def test_damaged_caches_are_reported_and_recomputed_to_the_same_rows(tmp_path, tiny_lm_dir, labelled_jsonl,
                                                                     capsys):
    """A truncated relabel shard and an edited model file: each is reported in one warning line, its stage
    recomputed, and every row and model byte equals the first run's."""
    import hashlib

    def digests():
        files = sorted(work.glob("0*/*/shards/shard-*.jsonl")) + sorted(work.glob("04_train/*/model/*"))
        return {str(p.relative_to(work)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files
                if p.suffix in (".jsonl", ".safetensors") or p.name == "vocab.json"}

    work = tmp_path / "work"
    cfg = tiny_config(tiny_lm_dir, labelled_jsonl)
    rows = run_pipeline(cfg, work, progress=False, log=lambda m: None)
    before = digests()
    (shard,) = work.glob("02_relabel/*/shards/shard-00001.jsonl")
    shard.write_bytes(shard.read_bytes()[:-20])
    (weights,) = work.glob("04_train/*/model/model.safetensors")
    data = bytearray(weights.read_bytes())
    data[-3] ^= 1
    weights.write_bytes(bytes(data))
    capsys.readouterr()
    again = run_pipeline(cfg, work, progress=False, log=lambda m: None)
    warnings = capsys.readouterr().err.splitlines()
    assert len(warnings) == 2 and all(w.startswith("unigen: warning: ") for w in warnings)
    assert "shards/shard-00001.jsonl does not match its sha256" in warnings[0] and "relabel" in warnings[0]
    assert "model/model.safetensors does not match its sha256" in warnings[1] and "train" in warnings[1]
    assert digests() == before
    assert {k: v["custom"]["accuracy"] for k, v in again.items()} == {
        k: v["custom"]["accuracy"] for k, v in rows.items()}


def test_prompting_baseline_scores_with_the_labelers_rule():
    from unigen.pipeline import prompting_config

    cfg = load_config(None, [])
    assert cfg.relabel.scoring_rule == "verbalizer" and cfg.scoring.rule == "nll"
    assert prompting_config(cfg).scoring.rule == "verbalizer"  # run.prompt_rule=relabel
    assert prompting_config(load_config(None, ["run.prompt_rule=nll"])).scoring.rule == "nll"
    assert prompting_config(load_config(None, ["relabel.scoring_rule=auto"])).scoring.rule == "nll"
    assert prompting_config(cfg).relabel == cfg.relabel  # only the scoring rule changes
