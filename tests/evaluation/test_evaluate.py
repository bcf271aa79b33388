import json
import subprocess
import sys

import numpy as np
import pytest

from unigen.cli import main
from unigen.evaluation.datasets import Dataset
from unigen.evaluation.evaluate import accuracy, evaluate_classifier, macro_f1
from unigen.evaluation.tables import format_table


def test_metrics_by_hand():
    y, p = [1, 1, 0, 0, 1], [1, 0, 0, 1, 1]
    assert accuracy(y, p) == pytest.approx(0.6)
    # class 1: TP 2, FP 1, FN 1 -> 4/6; class 0: TP 1, FP 1, FN 1 -> 2/4
    assert macro_f1(y, p) == pytest.approx((4 / 6 + 2 / 4) / 2)
    assert macro_f1([1, 1], [1, 1]) == pytest.approx(0.5)  # class 0 absent everywhere scores 0


def test_three_class_macro_f1_by_hand():
    y, p = [0, 1, 2, 2, 1, 0], [0, 2, 2, 2, 1, 1]
    # class 0: TP 1, FP 0, FN 1 -> 2/3; class 1: TP 1, FP 1, FN 1 -> 2/4; class 2: TP 2, FP 1, FN 0 -> 4/5
    assert macro_f1(y, p, 3) == pytest.approx((2 / 3 + 2 / 4 + 4 / 5) / 3)
    assert macro_f1([0, 1], [0, 1], 3) == pytest.approx(2 / 3)  # an absent third class scores 0


def test_evaluation_counts_every_class_of_a_three_way_set():
    from unigen.evaluation.datasets import Dataset

    class Fixed:
        name, labels = "fixed", ("negative", "positive", "neutral")

        def predict_ids(self, texts):
            return np.array([0, 2, 2, 2, 1, 1])

    ds = Dataset("three", "custom", ["a", "b", "c", "d", "e", "f"], [0, 1, 2, 2, 1, 0])
    metrics = evaluate_classifier(Fixed(), [ds])["three"]
    assert metrics["macro_f1"] == pytest.approx((2 / 3 + 2 / 4 + 4 / 5) / 3)
    assert metrics["accuracy"] == pytest.approx(4 / 6)


class Constant:
    name = "always-positive"

    def predict_ids(self, texts):
        return np.ones(len(texts), dtype=int)


def test_evaluate_classifier_and_table():
    sets = [
        Dataset("sst2", "movie", ["a", "b"], [1, 0]),
        Dataset("cr", "electronics", ["c"] * 4, [1, 1, 1, 0]),
    ]
    res = evaluate_classifier(Constant(), sets)
    assert res["sst2"]["accuracy"] == 0.5 and res["cr"]["accuracy"] == 0.75
    assert res["average"] == pytest.approx(0.625)
    table = format_table({"const": res})
    assert "| const | 50.00 / 33.33 | 75.00 / 42.86 | 62.50 |" in table
    assert "82.15" in table  # the paper's Prompting row beside ours
    # like with like: the paper's Avg is its mean over the same two sets, not its seven-set 78.25
    paper_row = next(line for line in table.splitlines() if line.startswith("| paper"))
    assert paper_row == "| paper: Prompting GPT2-XL (acc.) | 82.15 | 80.30 | 81.22 |", paper_row
    assert "its mean over the same 2 set(s)" in table and "over all seven it is 78.25" in table


def test_the_paper_row_is_averaged_over_the_evaluated_sets_only():
    from unigen.evaluation.paper import PAPER_PROMPTING, paper_mean, set_dict

    paper = set_dict(PAPER_PROMPTING)
    one = format_table({"m": {"sst2": {"accuracy": 0.9, "macro_f1": 0.9, "n": 10}, "average": 0.9}})
    assert "| paper: Prompting GPT2-XL (acc.) | 82.15 | 82.15 |" in one and "78.25" not in one.split("\n")[3]
    full = {s: {"accuracy": 0.5, "macro_f1": 0.5, "n": 1} for s in paper if s != "average"}
    seven = format_table({"m": {**full, "average": 0.5}})
    assert seven.splitlines()[3].endswith("| 78.25 |") and "same 7" not in seven
    own = format_table({"m": {"mine.jsonl": {"accuracy": 0.9, "macro_f1": 0.9, "n": 3}, "average": 0.9}})
    assert own.splitlines()[3] == "| paper: Prompting GPT2-XL (acc.) | - | - |"
    assert paper_mean(paper, ["sst2", "imdb"]) == pytest.approx((82.15 + 70.26) / 2)
    assert paper_mean(paper, ["sst2", "mine.jsonl"]) is None


def test_cli_evaluate_vader_writes_schema(tmp_path, capsys):
    out = tmp_path / "m.json"
    assert (
        main(["evaluate", "--model", "vader", "--datasets", "sst2,cr", "--limit", "40", "--output", str(out)])
        == 0
    )
    printed = capsys.readouterr().out
    assert "40/1821" in printed and "--limit" in printed
    data = json.loads(out.read_text())
    assert set(data) == {"sst2", "cr", "average"}
    assert set(data["sst2"]) == {"accuracy", "macro_f1", "n"} and data["sst2"]["n"] == 40
    assert data["average"] == pytest.approx((data["sst2"]["accuracy"] + data["cr"]["accuracy"]) / 2)


def test_cli_evaluate_prompting_with_tiny_lm(tiny_lm_dir, labelled_jsonl, tmp_path):
    out = tmp_path / "p.json"
    code = main(["evaluate", "--model", f"prompt:{tiny_lm_dir}", "--datasets", str(labelled_jsonl),
                 "--output", str(out), "--set", "scoring.rule=verbalizer"])
    assert code == 0
    assert json.loads(out.read_text())["custom"]["n"] == 4


@pytest.mark.parametrize("argv, message", [
    (["evaluate", "--model", "vader", "--datasets", "nope"], "unknown dataset 'nope'"),
    (["evaluate", "--model", "vader", "--set", "scoring.rule=x"], "scoring.rule must be one of"),
    (["evaluate", "--model", "bogus", "--datasets", "sst2"], "unknown model 'bogus'"),
])
def test_cli_errors_are_one_line(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("unigen: error:") and message in err and "\n" not in err


def test_cli_config_prints_yaml(capsys):
    assert main(["config", "--set", "relabel.temperature=0.3"]) == 0
    assert "temperature: 0.3  # tau_RE" in capsys.readouterr().out


def test_help_does_not_import_torch():
    code = "import sys, unigen.cli; unigen.cli.build_parser(); assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_cli_train_then_predict_and_evaluate_a_task_model(tmp_path, labelled_jsonl, capsys):
    from tam_helpers import make_tiny_bert, sentiment_rows

    bert = make_tiny_bert(tmp_path / "bert")
    rows = tmp_path / "rows.jsonl"
    rows.write_text("".join(json.dumps(r) + "\n" for r in sentiment_rows(24)))
    model = tmp_path / "model"
    settings = ["--set", f"train.tam={bert}", "--set", "train.epochs=1", "--set", "train.projection_dim=16"]
    assert main(["train", "--data", str(rows), "--output", str(model), "--quiet", *settings]) == 0
    capsys.readouterr()
    assert main(["predict", "--model", str(model), "a great movie"]) == 0
    assert json.loads(capsys.readouterr().out)["label"] in ("negative", "positive")
    out = tmp_path / "eval.json"
    assert (
        main(["evaluate", "--model", str(model), "--datasets", str(labelled_jsonl), "--output", str(out)])
        == 0
    )
    assert json.loads(out.read_text())["custom"]["n"] == 4


def test_subsample_follows_sample_seed_not_run_seed():
    from unigen.config import load_config
    from unigen.evaluation.evaluate import load_eval_sets

    def rows(*overrides):
        return load_eval_sets("sst2", load_config(None, list(overrides)), limit=50)[0].texts

    assert rows("seed=1") != rows("seed=2")  # default: the run's seed picks the rows
    assert (
        rows("seed=1", "evaluate.sample_seed=7") == rows("seed=2", "evaluate.sample_seed=7") == rows("seed=7")
    )


def test_an_explicit_engine_gets_its_own_evaluation_cache(tmp_path):
    from unigen.config import load_config
    from unigen.evaluation.stage import evaluate_settings, identity_of

    model = tmp_path / "model"
    model.mkdir()

    def key(spec, engine):
        cfg = load_config(None, [f"evaluate.engine={engine}"])
        return evaluate_settings(cfg, identity_of(spec, cfg), None)

    auto = load_config(None, [])
    assert identity_of(str(model), auto) == {"model": str(model.resolve())}  # auto: the key as before
    keys = {engine: key(str(model), engine) for engine in ("auto", "pytorch", "pytorch-bf16", "onnx")}
    assert len({json.dumps(k, sort_keys=True) for k in keys.values()}) == 4
    assert key("vader", "pytorch") == key("vader", "auto")  # only task models have engines
