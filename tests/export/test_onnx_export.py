"""ONNX export of both task-model kinds: the masked BiLSTM, probabilities against PyTorch (float32 and
int8), dynamic axes, the torch-free runtime and the command."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import onnx
import pytest
import torch

from unigen.cli import main
from unigen.errors import ModelNotAvailable
from unigen.export.onnx_export import (
    CALIBRATION_TEXTS,
    KEEP_FLOAT_SHARE,
    MaskedBiLSTM,
    _fake_int8,
    export_onnx,
    sensitive_linears,
)
from unigen.export.onnx_model import OnnxTaskModel
from unigen.tam.lstm import LSTMEncoder
from unigen.tam.model import TaskModel

from tam_helpers import LABELS, fake_vectors, fit_briefly, real_texts, sentiment_rows

ROWS = sentiment_rows(48)
EDGE = ["", "   ", "GOOD!!!", "unknownword another unknownword", "café naïve 😀 good",
        " ".join(["the movie was really very good"] * 20)]  # far beyond the token limit
TEXTS = [r["text"] for r in sentiment_rows(200, seed=1)] + EDGE + real_texts(30)



@pytest.fixture(scope="module", params=["lstm", "bert"])
def trained(request, bert_dir, tiny_lstm, tmp_path_factory):
    """(kind, trained tiny task model, its saved folder)."""
    if request.param == "lstm":
        model, folder = tiny_lstm
        return "lstm", model, folder
    model = TaskModel.build(str(bert_dir), LABELS, projection_dim=16, seed=0, pooling="mean", max_length=24)
    fit_briefly(model, ROWS, steps=200)  # 60 steps left it at 0.89-0.90 top probability, CPU-dependent
    folder = model.save_pretrained(tmp_path_factory.mktemp(f"{request.param}-model"))
    return request.param, model, folder


def test_masked_bilstm_equals_the_packed_encoder():
    torch.manual_seed(0)
    encoder = LSTMEncoder(30, 6, 5).eval()
    lengths = torch.tensor([1, 7, 3, 7, 2])
    ids = torch.randint(2, 30, (5, 7))
    mask = (torch.arange(7).unsqueeze(0) < lengths.unsqueeze(1)).long()
    ids = ids * mask  # <pad> = 0 after each row's length
    with torch.no_grad():
        np.testing.assert_allclose(MaskedBiLSTM(encoder)(ids, mask), encoder(ids, mask), atol=1e-6)
        empty = torch.zeros(1, 3, dtype=torch.long)  # an all-padding row counts as length 1, as packing does
        np.testing.assert_allclose(MaskedBiLSTM(encoder)(empty, empty), encoder(empty, empty), atol=1e-6)


def test_float32_export_matches_pytorch(trained, tmp_path):
    kind, model, folder = trained
    out = export_onnx(folder, tmp_path / "onnx")
    record = json.loads((out / "unigen_onnx.json").read_text())
    assert record["labels"] == list(LABELS) and record["quantization"] is None
    assert record["check"]["max_abs_diff"] < 1e-4
    files = {p.name for p in out.iterdir()}
    assert {"model.onnx", "unigen_onnx.json", "vocab.json" if kind == "lstm" else "tokenizer.json"} <= files
    card = (out / "README.md").read_text()  # the model's card, plus a section on the export
    assert "## Training data" in card and "## ONNX export" in card and "float32, opset" in card
    onnx_model = OnnxTaskModel.from_pretrained(out)
    assert onnx_model.labels == LABELS
    # the same token ids as the PyTorch model's tokenizer, padding and truncation included
    ours, theirs = onnx_model.encode(TEXTS), model.encode(TEXTS)
    for key in ("input_ids", "attention_mask"):
        np.testing.assert_array_equal(ours[key], theirs[key].numpy())
    expected = model.predict_proba(TEXTS)
    assert expected.max() > 0.9  # the model is confident, so the comparison means something
    np.testing.assert_allclose(onnx_model.predict_proba(TEXTS, batch_size=16), expected, atol=1e-4)
    np.testing.assert_allclose(onnx_model.predict_proba(TEXTS[0]), expected[0], atol=1e-4)
    assert onnx_model.predict(TEXTS) == model.predict(TEXTS)
    assert onnx_model.predict(TEXTS[3]) == model.predict(TEXTS[3])
    assert onnx_model.predict_proba([]).shape == (0, 2)
    with pytest.raises(TypeError, match="item 1"):
        onnx_model.predict_proba(["ok", 3])


def test_a_damaged_export_is_refused(trained, tmp_path):
    kind, _, folder = trained
    out = export_onnx(folder, tmp_path / "onnx", check=False)
    record = json.loads((out / "unigen_onnx.json").read_text())
    tokenizer = "vocab.json" if kind == "lstm" else "tokenizer.json"
    assert set(record["sha256"]) == {"model.onnx", tokenizer}
    data = (out / "model.onnx").read_bytes()
    (out / "model.onnx").write_bytes(data[: len(data) // 2])  # a truncated copy
    with pytest.raises(ModelNotAvailable, match="model.onnx does not match its sha256"):
        OnnxTaskModel.from_pretrained(out)
    (out / "model.onnx").write_bytes(data)
    (out / tokenizer).unlink()
    with pytest.raises(ModelNotAvailable, match=f"{tokenizer} is missing"):
        OnnxTaskModel.from_pretrained(out)


def test_passes_cut_by_length_give_the_same_probabilities(trained, tmp_path, monkeypatch):
    _, model, folder = trained
    onnx_model = OnnxTaskModel.from_pretrained(export_onnx(folder, tmp_path / "onnx", check=False))
    whole = onnx_model.predict_proba(TEXTS, batch_size=64)
    monkeypatch.setattr("unigen.tam.batching.PASS_OVERHEAD_TOKENS", 1)  # cut nearly every batch
    np.testing.assert_allclose(onnx_model.predict_proba(TEXTS, batch_size=64), whole, atol=1e-5)
    np.testing.assert_allclose(model.predict_proba(TEXTS, batch_size=64), whole, atol=1e-4)


def test_dynamic_batch_and_sequence_axes(trained, tmp_path):
    _, model, folder = trained
    onnx_model = OnnxTaskModel.from_pretrained(export_onnx(folder, tmp_path / "onnx", check=False))
    names = [i.name for i in onnx_model.session.get_inputs()]
    assert names == ["input_ids", "attention_mask"]
    for node in onnx_model.session.get_inputs():
        assert all(isinstance(d, str) for d in node.shape), node.shape  # symbolic, not fixed
    for batch, length in [(1, 1), (1, 9), (5, 3), (33, model.spec.max_length)]:
        texts = [" ".join(["good movie", "awful food", "the phone"][(i + j) % 3] for j in range(length))
                 for i in range(batch)]
        enc = model.encode(texts)
        (probs,) = onnx_model.session.run(None, {k: v.numpy() for k, v in enc.items()})
        assert probs.shape == (batch, 2)
        with torch.no_grad():
            expected = torch.softmax(model(**enc).logits, dim=-1).numpy()
        np.testing.assert_allclose(probs, expected, atol=1e-4)


def test_int8_export_agrees_on_99_percent(trained, tmp_path):
    kind, model, folder = trained
    fp32 = export_onnx(folder, tmp_path / "fp32", check=False)
    int8 = export_onnx(folder, tmp_path / "int8", quantize="int8")
    assert json.loads((int8 / "unigen_onnx.json").read_text())["quantization"] == "int8"
    quantized = OnnxTaskModel.from_pretrained(int8)
    graph = onnx.load(str(int8 / "model.onnx")).graph
    ops = {n.op_type for n in graph.node}
    assert ops & {"DynamicQuantizeLinear", "DynamicQuantizeLSTM", "MatMulInteger"}, ops
    assert any(t.data_type == onnx.TensorProto.INT8 for t in graph.initializer)  # int8 weights
    assert not any(t.data_type == onnx.TensorProto.INT8
                   for t in onnx.load(str(fp32 / "model.onnx")).graph.initializer)
    agreement = np.mean(np.array(quantized.predict(TEXTS)) == np.array(model.predict(TEXTS)))
    assert agreement >= 0.99
    # the recipe: LSTM models quantize every op ONNX Runtime can; transformers only the encoder's MatMuls,
    # keeping the most sensitive quarter of them (and the embeddings, the head) in float32
    record = json.loads((int8 / "unigen_onnx.json").read_text())["int8"]
    matmuls = [n for n in graph.node if n.op_type in ("MatMul", "MatMulInteger")]
    weights = {t.name for t in graph.initializer}
    if kind == "lstm":
        assert record["recipe"] == "dynamic" and record["kept_float"] == []
        assert "DynamicQuantizeLSTM" in ops
    else:
        assert record["recipe"] == "dynamic-matmul-sensitive-float"
        linears = [n for n, m in model.encoder.named_modules() if isinstance(m, torch.nn.Linear)]
        assert len(record["kept_float"]) == round(KEEP_FLOAT_SHARE * len(linears)) > 0
        assert set(record["kept_float"]) <= set(linears)
        float_weight_matmuls = [n for n in matmuls if n.op_type == "MatMul" and n.input[1] in weights
                                and n.name.startswith("/encoder/")]
        int8_matmuls = [n for n in matmuls if n.op_type == "MatMulInteger"]
        in_graph = len(float_weight_matmuls) + len(int8_matmuls)  # the unused BERT pooler is not
        assert in_graph == sum(1 for n in linears if ".layer." in n)
        kept_in_graph = [n for n in record["kept_float"] if ".layer." in n]
        assert len(float_weight_matmuls) == len(kept_in_graph)
        assert len(int8_matmuls) == in_graph - len(kept_in_graph)
        assert all(n.name.startswith("/encoder/") for n in int8_matmuls)  # the head stays float32
        embeddings = [t for t in graph.initializer if "word_embeddings" in t.name]
        assert embeddings and embeddings[0].data_type == onnx.TensorProto.FLOAT  # embeddings stay float32


def test_sensitive_linears_rank_the_encoder_layers(trained):
    kind, model, _ = trained
    if kind == "lstm":
        pytest.skip("transformer encoders only")
    ranked = sensitive_linears(model, CALIBRATION_TEXTS[:8])
    linears = {n for n, m in model.encoder.named_modules() if isinstance(m, torch.nn.Linear)}
    assert {name for name, _, _ in ranked} == linears
    scores = [score for _, _, score in ranked]
    assert scores == sorted(scores, reverse=True) and scores[0] > 0


def test_fake_int8_is_close_to_the_float_linear():
    torch.manual_seed(0)
    linear = torch.nn.Linear(16, 4)
    x = torch.randn(3, 5, 16)
    exact = linear(x)
    approx = _fake_int8(x, linear.weight, linear.bias)
    assert approx.shape == exact.shape
    assert 0 < float((approx - exact).abs().max()) < 0.05


def test_the_runtime_needs_no_torch(trained, tmp_path):
    _, model, folder = trained
    out = export_onnx(folder, tmp_path / "onnx", check=False)
    code = (
        "import sys, json; from unigen.export.onnx_model import OnnxTaskModel; "
        f"m = OnnxTaskModel.from_pretrained({str(out)!r}); "
        "p = m.predict_proba(['the movie was good', 'awful food']); "
        "print(json.dumps({'probs': p.tolist(), 'heavy': sorted(x for x in ('torch', 'transformers') "
        "if x in sys.modules)}))"
    )
    result = json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                       check=True).stdout)
    assert result["heavy"] == []
    np.testing.assert_allclose(result["probs"], model.predict_proba(["the movie was good", "awful food"]),
                               atol=1e-4)


def test_export_command(tmp_path, capsys):
    model = TaskModel.build("lstm", LABELS, texts=[r["text"] for r in ROWS], vectors=fake_vectors(),
                            lstm_hidden=8, projection_dim=16, seed=0)
    folder = model.save_pretrained(tmp_path / "model")
    assert main(["export", str(folder), "--format", "onnx", "--output", str(tmp_path / "out"),
                 "--quantize", "int8"]) == 0
    out = capsys.readouterr().out
    assert "exported lstm task model (int8" in out and "check against PyTorch" in out
    assert OnnxTaskModel.from_pretrained(tmp_path / "out").predict("the movie was good") in LABELS


def test_export_errors(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["export", str(tmp_path / "empty"), "--output", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("unigen: error:") and "not a UniGen task-model folder" in err
    assert len(err.splitlines()) == 1
    with pytest.raises(ModelNotAvailable, match="not an exported ONNX task model"):
        OnnxTaskModel.from_pretrained(tmp_path / "empty")


@pytest.mark.slow
def test_the_embedded_minilm_exports_exactly(tmp_path):
    """The real encoder (all-MiniLM-L6-v2, 128 tokens, mean pooling): float32 ONNX within 1e-4 of PyTorch on
    real test-set texts, long ones cut at the token limit included."""
    model = TaskModel.build("minilm-l6", LABELS, max_length=128, pooling="mean", seed=0)
    texts = real_texts(15) + EDGE
    out = export_onnx(model, tmp_path / "onnx")
    onnx_model = OnnxTaskModel.from_pretrained(out)
    ids = onnx_model.encode(texts)["input_ids"]
    np.testing.assert_array_equal(ids, model.encode(texts)["input_ids"].numpy())
    assert ids.shape[1] == 128  # a text was cut at the limit
    np.testing.assert_allclose(onnx_model.predict_proba(texts), model.predict_proba(texts), atol=1e-4)
    assert "base_model: sentence-transformers/all-MiniLM-L6-v2" in (out / "README.md").read_text()


def test_evaluation_engines_give_the_same_probabilities(trained, monkeypatch):
    import unigen.tam.autocast as autocast_mod
    from unigen.evaluation import evaluate
    from unigen.evaluation.evaluate import AutocastModel, TaskModelClassifier, eval_engine, load_task_model

    kind, _, folder = trained
    by_torch, by_onnx = load_task_model(folder, "pytorch", "cpu"), load_task_model(folder, "onnx", "cpu")
    assert isinstance(by_torch, TaskModel) and isinstance(by_onnx, OnnxTaskModel)
    expected = by_torch.predict_proba(TEXTS)
    np.testing.assert_allclose(by_onnx.predict_proba(TEXTS, batch_size=16), expected, atol=1e-4)
    by_bf16 = load_task_model(folder, "pytorch-bf16", "cpu")
    assert isinstance(by_bf16, AutocastModel) and by_bf16.labels == LABELS
    bf16 = by_bf16.predict_proba(TEXTS)
    assert bf16.dtype == np.float32 and np.abs(bf16 - expected).max() < 0.05
    assert not np.array_equal(bf16, expected)  # bf16 did run (emulated where the CPU lacks it)
    ids = TaskModelClassifier(by_onnx, "m", batch_size=7, engine="onnx").predict_ids(TEXTS)
    assert ids.tolist() == expected.argmax(axis=1).tolist()
    with pytest.raises(ValueError, match="engine must be one of"):
        load_task_model(folder, "auto")
    architecture = "lstm" if kind == "lstm" else "transformer"
    assert evaluate.model_architecture(folder) == architecture
    for native, want in ((False, "onnx"), (True, "onnx" if kind == "lstm" else "pytorch-bf16")):
        monkeypatch.setattr(autocast_mod, "native_bf16", lambda device, native=native: native)
        assert eval_engine("auto", "cpu", architecture) == want
    assert eval_engine("pytorch", "cpu", architecture) == "pytorch"
    monkeypatch.setattr(evaluate, "find_spec", lambda name: None)  # no onnxruntime installed
    monkeypatch.setattr(autocast_mod, "native_bf16", lambda device: False)
    assert eval_engine("auto", "cpu", architecture) == "pytorch"
