"""Model cards (written by save_pretrained, completed by `unigen run`) and `unigen export-data` (Parquet +
dataset card), on tiny models and a tiny pipeline run."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from unigen.cli import main
from unigen.config import load_config
from unigen.config.presets import tiny_run_settings
from unigen.export.parquet import export_training_data
from unigen.pipeline import run_pipeline
from unigen.stages import Stage
from unigen.tam.model import TaskModel
from unigen.tam.model_card import model_card, parse_card, write_model_card

from capabilities import need
from tam_helpers import LABELS, fake_vectors, make_tiny_bert, sentiment_rows

TEXTS = [r["text"] for r in sentiment_rows(12)]
EVALUATION = {"sst2": {"accuracy": 0.8125, "macro_f1": 0.81, "n": 1821},
              "tweet": {"accuracy": 0.6, "macro_f1": 0.55, "n": 100}, "average": 0.70625}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, tiny_lm_dir) -> Path:
    """A finished tiny `unigen run` (LSTM task model, evaluated on a 4-row file)."""
    tmp = tmp_path_factory.mktemp("run")
    data = tmp / "custom.jsonl"
    data.write_text("".join(json.dumps({"text": t, "label": i % 2}) + "\n"
                            for i, t in enumerate(["awful boring film", "i love this movie", "bad review",
                                                   "great product"])))
    cfg = load_config(None, tiny_run_settings(tiny_lm_dir, data, "run.baselines=[]"))
    run_pipeline(cfg, tmp / "work", progress=False, log=lambda m: None)
    return tmp / "work"


def _model_dir(run_dir: Path) -> Path:
    return Path(json.loads((run_dir / "run.json").read_text())["stages"]["model lstm"])


@pytest.mark.parametrize("kind", ["lstm", "bert"])
def test_save_pretrained_writes_a_model_card(kind, tmp_path):
    if kind == "lstm":
        model = TaskModel.build("lstm", LABELS, texts=TEXTS, vectors=fake_vectors(), lstm_hidden=8,
                                projection_dim=16, seed=0)
    else:
        model = TaskModel.build(str(make_tiny_bert(tmp_path / "bert")), LABELS, projection_dim=16, seed=0)
    folder = model.save_pretrained(tmp_path / "saved", training={"rows": 12, "seed": 3, "best_epoch": 2})
    card = parse_card((folder / "README.md").read_text())
    meta = card["metadata"]
    assert meta["pipeline_tag"] == "text-classification" and meta["library_name"] == "unigen"
    assert "model-index" not in meta and "base_model" not in meta  # not evaluated; a local encoder folder
    sections = card["sections"]
    assert {"Labels", "Model", "Training data", "Training", "Evaluation", "Intended use", "Limitations",
            "How to use"} <= set(sections)
    assert "`negative`" in sections["Labels"] and "`positive`" in sections["Labels"]
    params = sum(p.numel() for p in model.parameters())
    assert f"| parameters | {params:,} |" in sections["Model"]
    assert "Synthetic training data only" in sections["Limitations"]
    assert "Not evaluated yet" in sections["Evaluation"]
    assert "| seed | `3` |" in sections["Training"]
    assert json.loads((folder / "unigen_tam.json").read_text())["parameters"] == params
    TaskModel.from_pretrained(folder)  # the card does not disturb loading


def test_card_of_an_embedded_encoder_names_its_hub_model():
    record = {"architecture": "transformer", "encoder": "minilm-l6", "labels": ["negative", "positive"],
              "pooling": "mean", "max_length": 128, "projection_dim": 256}
    card = parse_card(model_card(record, parameters=22_800_000, evaluation=EVALUATION))
    assert card["metadata"]["base_model"] == "sentence-transformers/all-MiniLM-L6-v2"
    (index,) = card["metadata"]["model-index"]
    results = {r["dataset"]["type"]: r["metrics"][0]["value"] for r in index["results"]}
    assert results == {"sst2": 0.8125, "tweet": 0.6}
    assert "| SST-2 | 1821 | 81.2 | 81.0 |" in card["sections"]["Evaluation"]
    assert "**70.6**" in card["sections"]["Evaluation"]
    weakest = "Weakest in its evaluation**: TweetEval sentiment (60.0%), SST-2 (81.2%)."
    assert weakest in card["sections"]["Limitations"]


def test_the_run_writes_provenance_and_evaluation_into_the_card(run_dir):
    model_dir = _model_dir(run_dir)
    record = json.loads((model_dir / "unigen_tam.json").read_text())
    data = record["training"]["data"]
    gen = Stage.load(next((run_dir / "01_generate").iterdir())).manifest
    rel = Stage.load(next((run_dir / "02_relabel").iterdir())).manifest
    assert data["generated"] == gen["counts"]["rows"] and data["kept"] == rel["counts"]["kept"]
    assert data["prompt_set"] == "universal" and data["seed"] == gen["seed"]
    assert data["lengths"] == ["sentence", "short", "long"]  # the default's length classes
    assert data["relabel"]["rule"] == rel["rule"]
    assert set(data["stages"]) == {"generate", "relabel", "weight"}
    assert record["training"]["settings"]["epochs"] == 1
    card = parse_card((model_dir / "README.md").read_text())
    text = card["sections"]["Training data"]
    assert f"| generated (texts written) | {data['generated']} |" in text
    assert f"relabel rule `{rel['rule']}`" in text
    assert "prompt set `universal` in the length classes `sentence`, `short`, `long` (seed" in text
    assert "| custom | 4 |" in card["sections"]["Evaluation"]  # `unigen run` added the evaluation
    assert card["metadata"]["model-index"][0]["results"][0]["dataset"]["type"] == "custom"
    assert json.loads((model_dir / "evaluation.json").read_text())["custom"]["n"] == 4
    write_model_card(model_dir)  # re-rendered later, the evaluation is kept
    assert "| custom | 4 |" in (model_dir / "README.md").read_text()
    assert (run_dir / "results.png").read_bytes().startswith(b"\x89PNG")  # the run's picture


def test_export_data_writes_parquet_and_a_dataset_card(run_dir, tmp_path, capsys):
    model_dir = _model_dir(run_dir)
    rows = json.loads((model_dir / "unigen_tam.json").read_text())["training"]["rows"]
    assert main(["export-data", str(run_dir), "--output", str(tmp_path / "a")]) == 0
    assert f"wrote {rows} training rows" in capsys.readouterr().out
    table = pq.read_table(tmp_path / "a" / "train.parquet")
    assert table.num_rows == rows
    assert table.column_names == ["text", "label", "label_name", "probs", "prompt_label", "weight", "id"]
    first = table.slice(0, 1).to_pylist()[0]
    assert first["label_name"] == LABELS[first["label"]] and abs(sum(first["probs"]) - 1) < 1e-4
    # the same rows from the train stage folder and from the weight stage folder
    export_training_data(model_dir.parent, tmp_path / "b")
    export_training_data(next((run_dir / "03_weight").iterdir()), tmp_path / "c")
    for other in ("b", "c"):
        assert pq.read_table(tmp_path / other / "train.parquet").equals(table)
    card = parse_card((tmp_path / "a" / "README.md").read_text())
    assert card["metadata"]["task_categories"] == ["text-classification"]
    assert card["metadata"]["configs"][0]["data_files"][0]["path"] == "train.parquet"
    assert {"Loading", "Columns", "Labels", "How the rows were made", "Limitations"} <= set(card["sections"])
    assert f"| in this data set | {rows} |" in card["sections"]["How the rows were made"]
    assert "in the length classes `sentence`, `short`, `long`" in (tmp_path / "a" / "README.md").read_text()


def test_export_data_loads_with_datasets(run_dir, tmp_path):
    datasets = need("datasets")
    out = export_training_data(run_dir, tmp_path / "data")
    rows = datasets.load_dataset("parquet", data_files=str(out / "train.parquet"), split="train",
                                 cache_dir=str(tmp_path / "cache"))
    assert rows.num_rows == pq.read_metadata(out / "train.parquet").num_rows
    assert set(rows.features) >= {"text", "label", "probs"} and isinstance(rows[0]["text"], str)
    # the folder itself, through the card's configs
    folder = datasets.load_dataset(str(out), split="train", cache_dir=str(tmp_path / "cache2"))
    assert folder.num_rows == rows.num_rows


def test_export_data_errors(tmp_path, run_dir, capsys):
    (tmp_path / "empty").mkdir()
    for source, message in [(tmp_path / "empty", "no weight stage folder"),
                            (tmp_path / "missing", "no such folder"),
                            (next((run_dir / "01_generate").iterdir()), "holds stage 'generate'")]:
        assert main(["export-data", str(source), "--output", str(tmp_path / "out")]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("unigen: error:") and message in err and len(err.splitlines()) == 1
