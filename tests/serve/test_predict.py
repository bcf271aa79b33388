"""``unigen predict`` for real work: files in and out, columns carried, both backends, one output format
shared with the Python API and the server, and every argument checked before any work."""

from __future__ import annotations

import io
import itertools
import json
import os
import stat
import sys

import numpy as np
import pytest

from unigen.cli import main
from unigen.inference import load_model
from unigen.predictions import predict_rows
from unigen.textfiles import TextRow

from tam_helpers import LABELS

TEXTS = ["the movie was really good", "awful food", "", "the phone is excellent !"]


@pytest.fixture(params=["pytorch", "onnx"])
def model_dir(request, folders):
    return folders[1][request.param], request.param


def run(capsys, *argv):
    code = main(["predict", *map(str, argv)])
    out, err = capsys.readouterr()
    return code, out, err


def one_line_error(capsys, *argv) -> str:
    code, out, err = run(capsys, *argv)
    assert code == 2, (out, err)
    assert err.startswith("unigen: error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    assert out == ""
    return err


def test_texts_get_label_names_and_empty_texts_no_label(model_dir, folders, capsys):
    path, backend = model_dir
    code, out, err = run(capsys, "--model", path, *TEXTS)
    assert code == 0
    rows = [json.loads(line) for line in out.splitlines()]
    assert [r["text"] for r in rows] == TEXTS
    expected = folders[0].predict_proba([t for t in TEXTS if t])
    got = [r for r in rows if r["text"]]
    assert [r["label"] for r in got] == [LABELS[i] for i in expected.argmax(axis=1)]
    assert all(list(r["probabilities"]) == list(LABELS) for r in got)
    np.testing.assert_allclose([list(r["probabilities"].values()) for r in got], expected, atol=1e-4)
    assert rows[2] == {"text": "", "label": None, "probabilities": None}
    assert f"with the {backend} model" in err  # which backend ran


def test_one_format_for_the_cli_the_python_api_and_the_server(folders, capsys):
    from fastapi.testclient import TestClient

    from unigen.serve.app import create_app

    model, paths = folders
    api = model.classify(TEXTS)
    _, out, _ = run(capsys, "--model", paths["pytorch"], *TEXTS)
    cli = [json.loads(line) for line in out.splitlines()]
    with TestClient(create_app(paths["pytorch"])) as client:
        served = client.post("/predict", json={"texts": TEXTS}).json()["predictions"]
    assert cli == api == served
    assert api[2] == {"text": "", "label": None, "probabilities": None}
    assert model.classify("awful food") == api[1]
    onnx = load_model(paths["onnx"]).classify(TEXTS)
    assert [p["label"] for p in onnx] == [p["label"] for p in api]


def test_csv_in_csv_out_carries_ids_and_columns(model_dir, tmp_path, capsys):
    path, backend = model_dir
    src = tmp_path / "reviews.csv"
    src.write_text('id,review,label,stars\n10,"the movie was really good",1,5\n11,,0,3\n'
                   '12,"awful food, truly",0,1\n')
    out = tmp_path / "labels.csv"
    code, _, err = run(capsys, "--model", path, "--input", src, "--output", out, "--text-field", "review")
    assert code == 0, err
    lines = out.read_text().splitlines()
    assert lines[0] == "id,review,label_input,stars,label,prob_negative,prob_positive"
    assert lines[1].startswith("10,the movie was really good,1,5,positive,")
    assert lines[2] == "11,,0,3,,,"  # an empty text: no label
    assert lines[3].startswith('12,"awful food, truly",0,1,negative,')
    assert "label written as label_input" in err and f"{backend} model" in err and "1 empty" in err
    assert stat.S_IMODE(out.stat().st_mode) == 0o666 & ~_umask()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_jsonl_and_parquet_in_jsonl_out(folders, tmp_path, capsys):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = folders[1]["onnx"]
    src = tmp_path / "in.jsonl"
    src.write_text('{"id": "a", "text": "awful food", "extra": [1, 2]}\n{"id": "b", "text": "so good"}\n')
    out = tmp_path / "out.jsonl"
    assert run(capsys, "--model", path, "--input", src, "--output", out)[0] == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(r["id"], r["label"]) for r in rows] == [("a", "negative"), ("b", "positive")]
    assert rows[0]["extra"] == [1, 2] and set(rows[0]["probabilities"]) == set(LABELS)
    pq.write_table(pa.table({"n": [1, 2], "text": ["awful food", "really good"]}), tmp_path / "in.parquet")
    code, out_text, _ = run(capsys, "--model", path, "--input", tmp_path / "in.parquet")
    assert code == 0
    assert [(r["n"], r["label"]) for r in map(json.loads, out_text.splitlines())] == [(1, "negative"),
                                                                                      (2, "positive")]


def test_jsonl_piped_into_stdin_is_read_as_json(folders, monkeypatch, capsys):
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(
        b'{"id": 1, "text": "awful food"}\n{"id": 2, "text": "the movie was really good"}\n')))
    code, out, _ = run(capsys, "--model", folders[1]["pytorch"])
    assert code == 0
    rows = [json.loads(line) for line in out.splitlines()]
    assert [(r["id"], r["text"], r["label"]) for r in rows] == [
        (1, "awful food", "negative"), (2, "the movie was really good", "positive")]


def test_a_long_file_shows_a_progress_bar_with_rate_and_eta(folders, tmp_path, capsys, monkeypatch):
    import unigen.cli.train as train

    monkeypatch.setattr(train, "PROGRESS_DELAY", 0.0)
    src = tmp_path / "many.txt"
    src.write_text("".join(f"text number {i} was good\n" for i in range(3000)))
    code, _, err = run(capsys, "--model", folders[1]["onnx"], "--input", src, "--output", tmp_path / "o.csv")
    assert code == 0
    assert "3000/3000" in err and "texts/s" in err and "predicted 3,000 text(s)" in err
    assert len((tmp_path / "o.csv").read_text().splitlines()) == 3001


def test_predict_rows_streams_in_chunks(folders):
    loaded = load_model(folders[1]["onnx"])
    endless = (TextRow(f"row {i}", f"text {i} good", {"i": i}) for i in itertools.count())
    first = list(itertools.islice(predict_rows(loaded, endless, chunk=16), 40))  # never reads it all
    assert [row.fields["i"] for row, _ in first] == list(range(40))
    assert all(pred["label"] in LABELS for _, pred in first)


def test_a_bad_row_leaves_no_output_file(folders, tmp_path, capsys):
    src = tmp_path / "in.txt"
    src.write_bytes(b"good\n" * 5000 + b"caf\xe9\n")
    out = tmp_path / "out.jsonl"
    err = one_line_error(capsys, "--model", folders[1]["onnx"], "--input", src, "--output", out)
    assert "in.txt:5001: not valid UTF-8" in err
    assert not out.exists() and not list(tmp_path.glob(".tmp-*"))


@pytest.mark.parametrize(("argv", "message"), [
    (["--batch-size", "-3", "hi"], "argument --batch-size: must be at least 1, got -3"),
    (["--batch-size", "0", "hi"], "argument --batch-size: must be at least 1, got 0"),
    (["--batch-size", "many", "hi"], "argument --batch-size: 'many' is not a whole number"),
    (["--device", "foo", "hi"], ("--device 'foo' is not a device", "--device foo: {model} is an ONNX")),
    (["--device", "cuda:x", "hi"], ("is not a device", "--device cuda:x: {model} is an ONNX export")),
    (["{dir}/in.jsonl"], "in.jsonl is a file: to classify the texts in it, use --input"),
    (["--input", "{dir}/in.jsonl", "hi"], "give TEXT arguments or --input FILE, not both"),
    (["--text-field", "body", "hi"], "--text-field and --input-format apply to --input FILE"),
    (["--input", "{dir}/missing.csv"], "missing.csv: no such file"),
    (["--input", "{dir}/empty.txt"], "empty.txt: no texts (the file is empty)"),
    (["--input", "{dir}/latin1.txt"], "latin1.txt:2: not valid UTF-8"),
    (["--input", "{dir}/two.csv"], "two.csv:1: no 'text' column (columns: a, b)"),
    (["--input", "{dir}/in.jsonl", "--text-field", "body"], "in.jsonl:1: no column 'body'"),
    (["--input", "{dir}/in.jsonl", "--output", "{dir}/out.txt"], "use .jsonl or .csv"),
    (["--input", "{dir}/in.jsonl", "--output", "{dir}/in.jsonl"], "is the input file"),
    (["--input", "{dir}/in.jsonl", "--output", "{dir}"], "is a folder"),
    (["--input", "{dir}/in.jsonl", "--output", "{dir}/in.jsonl/x.csv"], "is not a folder this user can"),
    (["--input", "{dir}/in.jsonl", "--input-format", "xml"], "argument --input-format: invalid choice"),
])
def test_every_bad_argument_is_one_line_and_status_2_before_any_work(model_dir, tmp_path, capsys, monkeypatch,
                                                                      argv, message):
    import unigen.inference as inference

    path, backend = model_dir
    (tmp_path / "in.jsonl").write_text('{"text": "good"}\n')
    (tmp_path / "empty.txt").write_text("")
    (tmp_path / "latin1.txt").write_bytes(b"fine\ncaf\xe9\n")
    (tmp_path / "two.csv").write_text("a,b\nx,y\n")
    if not any("latin1" in a for a in argv):  # these are found before the model loads
        monkeypatch.setattr(inference, "LoadedModel", None)
    err = one_line_error(capsys, "--model", path, *[a.format(dir=tmp_path) for a in argv])
    wanted = message[backend == "onnx"].format(model=path) if isinstance(message, tuple) else message
    assert wanted in err, err


def test_cuda_without_a_gpu_is_one_line(folders, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU")
    err = one_line_error(capsys, "--model", folders[1]["pytorch"], "--device", "cuda", "hi")
    assert "--device cuda: PyTorch sees no CUDA GPU" in err
    err = one_line_error(capsys, "--model", folders[1]["onnx"], "--device", "cuda", "hi")
    assert "is an ONNX export, which runs on the CPU" in err
