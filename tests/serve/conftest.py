"""A tiny trained LSTM task model, saved and exported, for the server tests."""

from __future__ import annotations

import pytest

from unigen.export.onnx_export import export_onnx
from unigen.tam.model import TaskModel

from tam_helpers import LABELS, fake_vectors, fit_briefly, sentiment_rows

ROWS = sentiment_rows(48)


@pytest.fixture(scope="session")
def folders(tmp_path_factory):
    """(the trained model, {backend: folder}) for a tiny LSTM task model and its ONNX export."""
    model = TaskModel.build("lstm", LABELS, texts=[r["text"] for r in ROWS],
                            vectors=fake_vectors(sentiment=1.0), lstm_hidden=8, projection_dim=16, seed=0)
    fit_briefly(model, ROWS)
    tmp = tmp_path_factory.mktemp("serve")
    saved = model.save_pretrained(tmp / "model", training={"rows": len(ROWS), "seed": 0})
    return model, {"pytorch": saved, "onnx": export_onnx(saved, tmp / "onnx", check=False)}
