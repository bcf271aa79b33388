"""``precision`` of :func:`unigen.inference.load_model`, ``unigen predict`` and ``unigen serve``: ``auto``
resolves to bf16 autocast for a PyTorch transformer on a device with native bf16 and to fp32 otherwise (LSTM,
ONNX, emulated bf16); bf16 gives the float32 labels; an explicit bf16 where it cannot run is one line."""

from __future__ import annotations

import json

import numpy as np
import pytest
from fastapi.testclient import TestClient

import unigen
import unigen.tam.autocast as autocast_mod
from unigen.cli import main
from unigen.errors import UniGenError
from unigen.inference import load_model, model_precision
from unigen.serve.app import create_app
from unigen.tam.autocast import AutocastModel
from unigen.tam.model import TaskModel

from tam_helpers import LABELS, fit_briefly, sentiment_rows

TEXTS = [r["text"] for r in sentiment_rows(64, seed=3)] + ["", "GOOD!!!", "awful food", "the film was fun"]


@pytest.fixture(scope="module")
def bert_folder(bert_dir, tmp_path_factory):
    """A tiny BERT task model, briefly fitted and saved (a transformer: bf16 autocast applies)."""
    model = TaskModel.build(str(bert_dir), LABELS, projection_dim=16, seed=0, pooling="mean", max_length=24)
    fit_briefly(model, sentiment_rows(48))
    return model.save_pretrained(tmp_path_factory.mktemp("bert-task-model"))


@pytest.fixture()
def native(monkeypatch):
    """``native(True | False)``: whether the device computes bf16 natively, as the precision rule sees it."""
    def set_native(value: bool) -> None:
        monkeypatch.setattr(autocast_mod, "native_bf16", lambda device: value)
    return set_native


@pytest.mark.parametrize("has_bf16", [True, False])
def test_auto_is_bf16_only_for_a_transformer_on_native_bf16(bert_folder, folders, native, has_bf16):
    native(has_bf16)
    want = {"bert": "bf16" if has_bf16 else "fp32", "lstm": "fp32", "onnx": "fp32"}
    paths = {"bert": bert_folder, "lstm": folders[1]["pytorch"], "onnx": folders[1]["onnx"]}
    for kind, path in paths.items():
        assert model_precision(path, "auto", "cpu") == want[kind], kind
        loaded = load_model(path)  # precision="auto"
        assert loaded.precision == loaded.info["precision"] == want[kind], kind
        assert isinstance(loaded.model, AutocastModel) == (want[kind] == "bf16"), kind
        assert load_model(path, precision="fp32").precision == "fp32"
    assert model_precision(bert_folder.parent, "auto", "cpu") == want["bert"]  # a train stage folder


def test_explicit_bf16_runs_without_native_bf16(bert_folder, native):
    native(False)
    loaded = unigen.load_model(bert_folder, precision="bf16")  # the top-level API: emulated, only slower
    assert loaded.precision == "bf16" and loaded.numerics == "bf16 autocast"
    assert isinstance(loaded.model, AutocastModel)


@pytest.mark.parametrize("kind", ["pytorch", "onnx"])
def test_explicit_bf16_on_an_lstm_or_an_onnx_export_is_one_line(folders, kind):
    what = "an ONNX export" if kind == "onnx" else "an LSTM task model"
    with pytest.raises(UniGenError, match=f"--precision bf16: .* is {what}, which runs in float32 only") as e:
        load_model(folders[1][kind], precision="bf16")
    assert "\n" not in str(e.value)
    with pytest.raises(UniGenError, match="--precision 'fp16': use auto, fp32, bf16"):
        load_model(folders[1][kind], precision="fp16")


def test_bf16_gives_the_float32_labels(bert_folder):
    fp32, bf16 = load_model(bert_folder, precision="fp32"), load_model(bert_folder, precision="bf16")
    texts = [t for t in TEXTS if t]
    p32, p16 = fp32.predict_proba(texts), bf16.predict_proba(texts)
    assert p16.dtype == np.float32 and not np.array_equal(p16, p32)  # bf16 did run
    assert np.abs(p16 - p32).max() < 0.05
    sure = p32.max(axis=1) > 0.55  # labels more than the tolerance from a tie
    assert sure.mean() > 0.8
    assert (p16.argmax(axis=1) == p32.argmax(axis=1))[sure].all()
    assert [p["label"] for p in bf16.classify(TEXTS)] == [p["label"] for p in fp32.classify(TEXTS)]


def test_the_server_reports_the_precision(bert_folder, folders, native):
    native(True)
    for path, want in ((bert_folder, "bf16"), (folders[1]["pytorch"], "fp32"), (folders[1]["onnx"], "fp32")):
        with TestClient(create_app(path)) as client:
            info = client.get("/model").json()
            assert info["precision"] == want, path
            assert client.post("/predict", json={"text": "awful food"}).status_code == 200
    with TestClient(create_app(load_model(bert_folder, precision="fp32"))) as client:
        assert client.get("/model").json()["precision"] == "fp32"


def test_predict_precision_option(bert_folder, native, capsys):
    native(True)
    rows = {}
    for precision, shown in (("auto", "bf16 autocast"), ("bf16", "bf16 autocast"), ("fp32", "fp32")):
        assert main(["predict", "--model", str(bert_folder), "--precision", precision, *TEXTS[:8]]) == 0
        out, err = capsys.readouterr()
        assert f"with the pytorch model {bert_folder} ({shown}) in" in err, err
        rows[precision] = [json.loads(line) for line in out.splitlines()]
    assert [r["label"] for r in rows["bf16"]] == [r["label"] for r in rows["fp32"]]
    assert rows["auto"] == rows["bf16"]


@pytest.mark.parametrize(("kind", "argv", "message"), [
    ("onnx", ["--precision", "bf16"], "--precision bf16: {model} is an ONNX export, which runs in float32"),
    ("pytorch", ["--precision", "bf16"], "--precision bf16: {model} is an LSTM task model"),
    ("pytorch", ["--precision", "fp16"], "argument --precision: invalid choice: 'fp16'"),
])
def test_predict_precision_errors_are_one_line_before_the_model_loads(folders, capsys, monkeypatch, kind,
                                                                       argv, message):
    import unigen.inference as inference

    monkeypatch.setattr(inference, "LoadedModel", None)  # found before the model loads
    path = folders[1][kind]
    assert main(["predict", "--model", str(path), *argv, "hi"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.startswith("unigen: error: ") and err.count("\n") == 1, err
    assert message.format(model=path) in err, err


def test_serve_start_up_line_shows_the_precision(bert_folder, folders, native, capsys, monkeypatch):
    import uvicorn

    monkeypatch.setattr(uvicorn.Server, "run", lambda self, sockets=None: None)  # start, but serve nothing
    native(True)
    for path, argv, shown in ((bert_folder, [], "pytorch model {} (bf16 autocast)"),
                              (bert_folder, ["--precision", "fp32"], "pytorch model {} (fp32)"),
                              (folders[1]["onnx"], [], "onnx model {} (fp32)")):
        assert main(["serve", str(path), "--port", "0", *argv]) == 0
        out = capsys.readouterr().out
        assert out.startswith("serving " + shown.format(path) + " on http://127.0.0.1:"), out
    assert main(["serve", str(folders[1]["onnx"]), "--port", "0", "--precision", "bf16"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("unigen: error: --precision bf16:") and err.count("\n") == 1, err
