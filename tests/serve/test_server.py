"""The HTTP API in-process (FastAPI's TestClient): predict, health, model card, limits, docs, the page,
for a PyTorch and an exported ONNX model."""

from __future__ import annotations

import re

import numpy as np
import pytest
from fastapi.testclient import TestClient

from unigen.cli import main
from unigen.serve.app import create_app, docs_assets_dir, load_model

from tam_helpers import LABELS


@pytest.fixture(scope="module", params=["pytorch", "onnx"])
def client(request, folders):
    model, paths = folders
    app = create_app(paths[request.param], max_texts=4, max_chars=100)
    with TestClient(app) as c:
        c.backend = request.param
        c.model = model
        yield c


def test_predict_one_and_many(client):
    r = client.post("/predict", json={"text": "the movie was really good"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"] == client.backend
    (pred,) = body["predictions"]
    expected = client.model.predict_proba("the movie was really good")
    assert pred["label"] == LABELS[int(expected.argmax())] == "positive"
    assert list(pred["probabilities"]) == list(LABELS)
    np.testing.assert_allclose(list(pred["probabilities"].values()), expected, atol=1e-4)
    texts = ["awful food", "the phone is excellent !", "so boring , very boring"]
    r = client.post("/predict", json={"texts": texts})
    assert r.status_code == 200
    preds = r.json()["predictions"]
    assert [p["text"] for p in preds] == texts
    assert [p["label"] for p in preds] == client.model.predict(texts) == ["negative", "positive", "negative"]


def test_health_and_model(client):
    assert client.get("/health").json() == {"status": "ok", "backend": client.backend, "labels": list(LABELS)}
    info = client.get("/model").json()
    assert info["labels"] == list(LABELS) and info["backend"] == client.backend
    assert info["architecture"] == "lstm" and info["limits"] == {"max_texts": 4, "max_chars": 100}
    assert info["parameters"] == sum(p.numel() for p in client.model.parameters())
    card = info["card"]
    assert card["metadata"]["pipeline_tag"] == "text-classification"
    assert "Synthetic training data only" in card["sections"]["Limitations"]


def test_limits_and_bad_bodies(client):
    r = client.post("/predict", json={"texts": ["good"] * 5})
    assert r.status_code == 413 and r.json()["detail"] == "too many texts: 5 in one request, at most 4"
    r = client.post("/predict", json={"texts": ["ok", "x" * 101]})
    assert r.status_code == 413 and r.json()["detail"] == "text 1 has 101 characters, at most 100 per text"
    r = client.post("/predict", content=b'{"text": "' + b"x" * 8000 + b'"}',
                    headers={"content-type": "application/json"})
    assert r.status_code == 413 and "too large" in r.json()["detail"]
    for body in ({}, {"text": "a", "texts": ["b"]}, {"texts": []}, {"text": 3}, {"texts": "not a list"}):
        r = client.post("/predict", json=body)
        assert r.status_code == 422, body
    assert "either \"text\"" in str(client.post("/predict", json={}).json()["detail"])


def test_docs_and_page(client):
    schema = client.get("/openapi.json").json()
    assert {"/predict", "/health", "/model"} <= set(schema["paths"])
    assert client.get("/docs").status_code == 200
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    html = page.text
    assert 'id="text"' in html and 'id="classify"' in html and "/predict" in html
    assert "http://" not in html and "https://" not in html  # nothing fetched from the internet


@pytest.mark.parametrize("path", ["/docs", "/redoc"])
def test_docs_need_no_network(client, path):
    """Swagger UI and ReDoc load their scripts and styles from this server (fastapi-offline's files), not a
    CDN: every URL in the page is local and answers 200 with content."""
    assert docs_assets_dir() is not None, "pip install fastapi-offline (the serve extra)"
    r = client.get(path)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert "http://" not in r.text and "https://" not in r.text
    urls = re.findall(r'(?:src|href)="([^"]+)"', r.text)
    assert any(u.endswith(".js") for u in urls), urls
    assert all(u.startswith("/") and not u.startswith("//") for u in urls), urls
    for url in urls:
        asset = client.get(url)
        assert asset.status_code == 200 and len(asset.content) > 1000, url
    assert "/openapi.json" in r.text


def test_load_model_kinds(folders, tmp_path):
    import shutil

    _, paths = folders
    assert load_model(paths["onnx"]).backend == "onnx"
    assert load_model(paths["pytorch"]).backend == "pytorch"  # a task-model folder
    stage = tmp_path / "04_train" / "abc"  # a train stage folder: the model lies in its model/ subfolder
    shutil.copytree(paths["pytorch"], stage / "model")
    loaded = load_model(stage)
    assert loaded.backend == "pytorch" and loaded.info["architecture"] == "lstm" and loaded.card


def test_serve_command_errors(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["serve", str(tmp_path / "empty"), "--port", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("unigen: error:") and "not a UniGen task-model folder" in err


def test_empty_texts_get_no_label_as_in_the_cli(client):
    r = client.post("/predict", json={"texts": ["", "   ", "the movie was really good"]})
    assert r.status_code == 200, r.text
    preds = r.json()["predictions"]
    assert preds[0] == {"text": "", "label": None, "probabilities": None}
    assert preds[1] == {"text": "   ", "label": None, "probabilities": None}
    assert preds[2]["label"] == "positive"
    assert client.post("/predict", json={"text": ""}).json()["predictions"] == [
        {"text": "", "label": None, "probabilities": None}]


@pytest.mark.parametrize(("body", "message"), [
    (b'{"text": "\\ud800"}', "text 0 holds an unpaired surrogate (U+D800 at character 1)"),
    (b'{"texts": ["fine", "ok \\udfff"]}', "text 1 holds an unpaired surrogate (U+DFFF at character 4)"),
    (b'{"text": "a\\u0000b"}', "text 0 holds a NUL character (U+0000 at character 2)"),
])
def test_text_that_is_not_unicode_or_holds_nul_is_422_in_one_line(client, body, message):
    r = client.post("/predict", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 422, r.text
    detail = r.json()["detail"]
    assert isinstance(detail, str) and detail.startswith(message) and "\n" not in detail


def test_a_malformed_body_echoing_a_surrogate_is_422_not_500(client):
    r = client.post("/predict", content=b'{"texts": "\\ud800"}', headers={"content-type": "application/json"})
    assert r.status_code == 422, r.text
    assert r.json()["detail"][0]["loc"] == ["body", "texts"]


def test_the_body_limit_holds_for_chunked_bodies(client):
    """A chunked body (no Content-Length) is counted while it is read: 10 MB of spaces around one short
    text is refused, not read whole and answered 200."""
    from unigen.serve.app import body_limit

    def chunks():
        yield b'{"text": "good"'
        for _ in range(160):  # 10 MB
            yield b" " * 65536
        yield b"}"

    r = client.post("/predict", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413, r.text
    assert "too large" in r.json()["detail"] and str(body_limit(4, 100)) in r.json()["detail"]
    small = client.post("/predict", content=iter([b'{"text": ', b'"good"}']),
                        headers={"content-type": "application/json"})
    assert small.status_code == 200 and small.json()["predictions"][0]["label"] == "positive"


def test_limits_must_be_at_least_one(folders):
    from unigen.errors import UniGenError

    for limits in ({"max_texts": 0}, {"max_chars": -5}, {"max_texts": 1.5}):
        with pytest.raises(UniGenError, match="must be a whole number of at least 1"):
            create_app(folders[1]["onnx"], **limits)
