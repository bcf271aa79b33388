import json

import pytest

from unigen.cli import main
from unigen.config import ConfigError
from unigen.evaluation.paper import TEST_SETS as SETS
from unigen.evaluation.tables import render_report
from unigen.experiment import CellsFailed, load_experiment, run_experiment

SPEC = """
workdir: {work}
output: {out}
base: [generate.samples_per_label=8]
cells:
  - {{group: main, method: unigen, tams: [lstm, minilm-l6], seeds: [1, 2]}}
  - {{group: main, method: zerogen, domains: all, tams: [minilm-l6]}}
  - {{group: ablation, method: unigen, ablations: [no-scl], tams: [minilm-l6]}}
  - {{group: zerogen-relabel, method: zerogen, domains: [movie], set: [relabel.mode=soft], tams: [minilm-l6]}}
  - {{group: data-size, label: until kept, method: unigen, set: [relabel.until_kept=true], tams: [lstm]}}
"""


@pytest.fixture()
def exp_file(tmp_path):
    path = tmp_path / "exp.yaml"
    path.write_text(SPEC.format(work=tmp_path / "work", out=tmp_path / "table.json"))
    return path


def fake_metrics(acc):
    out = {s: {"accuracy": acc, "macro_f1": acc, "n": 10} for s in SETS}
    out["average"] = acc
    return out


def test_cells_expand_over_domains_and_seeds(exp_file):
    exp = load_experiment(exp_file)
    assert len(exp.cells) == 2 + 5 + 1 + 1 + 1
    assert [c.seed for c in exp.cells[:2]] == [1, 2]
    assert {c.domain for c in exp.cells if c.method == "zerogen"} == {"movie", "products", "restaurant",
                                                                      "electronics", "tweet"}


def test_bad_cell_fails_before_any_work(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("cells:\n  - {method: zerogen, tams: [lstm]}\n")
    with pytest.raises(ConfigError, match="needs run.domain"):
        load_experiment(path)
    path.write_text("cells:\n  - {method: unigen, colour: red}\n")
    with pytest.raises(ConfigError, match="keys among"):
        load_experiment(path)


def test_records_are_resumable_and_rendered(exp_file, monkeypatch):
    calls = []

    def fake_run(cfg, workdir, **kwargs):
        calls.append((cfg.run.method, cfg.run.domain, cfg.seed, cfg.run.tams, cfg.relabel.mode))
        workdir.mkdir(parents=True, exist_ok=True)
        (workdir / "run.json").write_text(json.dumps({"stages": {f"model {t}": f"{workdir}/04_train/{t}/model"
                                                                 for t in cfg.run.tams}}))
        return {f"row {t}": fake_metrics(0.5 + 0.1 * i) for i, t in enumerate(cfg.run.tams)}

    monkeypatch.setattr("unigen.pipeline.run_pipeline", fake_run)
    exp = load_experiment(exp_file)
    records = run_experiment(exp, log=lambda m: None, max_cells=3)
    assert len(calls) == 3 and len(records) == 2 + 2 + 1
    records = run_experiment(exp, log=lambda m: None)
    assert len(calls) == 10 and len(json.loads(exp.output.read_text())) == len(records) == 4 + 5 + 1 + 1 + 1
    assert ("zerogen", "movie", 42, ("minilm-l6",), "soft") in calls
    assert run_experiment(exp, log=lambda m: None) == records and len(calls) == 10  # nothing left to do
    assert records[0]["model"].endswith("04_train/lstm/model") and records[0]["train_rows"] is None

    report = render_report(records, {})
    assert "| **UniGen** | 2 | 60.0±0.0 (77.7)" in report  # minilm-l6 vs the paper's DistilBERT
    assert "| zerogen / tweet | 1 | 50.0 (74.0)" in report
    assert "w/ no-scl | 1 | 50.0 (75.5)" in report
    assert "ZeroGen movie, relabel soft | 1 | 50.0 (81.8)" in report
    summary = report.split("### Main table")[0]  # the averages first, one line per row, seeds counted
    assert "| **UniGen** | - | 50.0±0.0 (2 seeds) | 60.0±0.0 (2 seeds) | 75.7 | 81.5 |" in summary
    assert "| zerogen / tweet | - | - | 50.0 | 72.8 | 76.2 |" in summary
    assert "### Extra: data-size" in report and "| until kept (lstm) | 1 | 50.0 |" in report


def test_cross_domain_summary_splits_sets_by_training_domain():
    def rec(method, domain, seed, acc):
        return {
            "group": "main",
            "label": "",
            "method": method,
            "domain": domain,
            "ablations": [],
            "settings": [],
            "tam": "minilm-l6",
            "generator": "smollm2-135m",
            "seed": seed,
            "accuracy": {s: acc[s] for s in SETS},
            "average": sum(acc.values()) / len(SETS),
        }

    # a movie baseline right on its three movie sets and at chance elsewhere; UniGen at 0.7 or 0.8 everywhere
    movie = {s: (1.0 if s in ("sst2", "imdb", "rotten_tomatoes") else 0.5) for s in SETS}
    records = [
        rec("zerogen", "movie", 42, movie),
        rec("unigen", None, 1, dict.fromkeys(SETS, 0.7)),
        rec("unigen", None, 2, dict.fromkeys(SETS, 0.8)),
    ]
    report = render_report(records, {})
    row = next(line for line in report.splitlines() if line.startswith("| zerogen / movie | sst2"))
    # in-domain 100 vs the paper's (80.06+69.13+74.73)/3; out-of-domain 50 vs 73.6; UniGen 75±7.1; gap 25
    assert row == (
        "| zerogen / movie | sst2, imdb, rotten_tomatoes | 100.0 (74.6) | 50.0 (73.6) | 75.0±7.1 (77.8) "
        "| 25.0 (4.2) |"
    )


def test_a_failing_cell_is_reported_after_the_others_ran(exp_file, monkeypatch):
    ran = []

    def fake_run(cfg, workdir, **kwargs):
        if cfg.run.domain == "products":
            raise RuntimeError("disk full")
        ran.append(cfg.run.domain)
        workdir.mkdir(parents=True, exist_ok=True)
        (workdir / "run.json").write_text(json.dumps({"stages": {f"model {t}": "m" for t in cfg.run.tams}}))
        return {f"row {t}": fake_metrics(0.5) for t in cfg.run.tams}

    monkeypatch.setattr("unigen.pipeline.run_pipeline", fake_run)
    exp = load_experiment(exp_file)
    with pytest.raises(
        CellsFailed, match=r"1 cell\(s\) failed: cell 4 \(ZeroGen \(products\).*disk full"
    ) as err:
        run_experiment(exp, log=lambda m: None)
    assert len(ran) == len(exp.cells) - 1 and "tweet" in ran  # cells after the failure still ran
    assert len(json.loads(exp.output.read_text())) == len(err.value.records) == 4 + 4 + 1 + 1 + 1
    # the CLI renders the tables of what did run and exits 1
    assert main(["experiment", str(exp_file), "--quiet", "--baselines", "none.json"]) == 1
    assert exp.output.with_suffix(".md").is_file()


def test_paired_differences_match_seeds():
    from unigen.evaluation.tables import render_paired

    ref = [{"seed": 1, "average": 0.60}, {"seed": 2, "average": 0.70}]
    row = [
        {"seed": 2, "average": 0.75},
        {"seed": 1, "average": 0.61},
        {"seed": 9, "average": 0.1},
    ]  # 9: no pair
    table = render_paired("T", ref, [("w/ x", row, -1.25), ("w/ none", [], None)])
    assert "| w/ x | 2 | +1.0 (seed 1), +5.0 (seed 2) | +3.0 ± 2.8 | -1.2 |" in table
    assert "w/ none" not in table


def test_committed_paper_matrix_is_valid_and_covers_the_issue():
    from pathlib import Path

    from unigen.config import load_config

    exp = load_experiment(Path(__file__).resolve().parents[1] / "experiments" / "paper.yaml")
    configs = [
        load_config(None, cell.overrides(exp.base)) for cell in exp.cells
    ]  # every cell's overrides parse
    groups = {cell.group for cell in exp.cells}
    assert {"main", "ablation", "generator", "zerogen-relabel"} <= groups
    seeds = {}
    for cell, cfg in zip(exp.cells, configs):
        if cell.group in ("main", "ablation") and cell.method == "unigen":
            seeds.setdefault((cell.ablations, cell.tams), set()).add(cfg.seed)
    assert seeds and all(len(s) >= 3 for s in seeds.values())  # 3 seeds of UniGen and of each ablation
