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
    r = client.post("/predict", content=b'{"text": "' + b"x" * 5000 + b'"}',
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
