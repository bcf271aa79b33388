"""A tiny trained LSTM task model, saved and exported, for the server tests."""

from __future__ import annotations

import pytest

from unigen.export.onnx_export import export_onnx

from tam_helpers import sentiment_rows

ROWS = sentiment_rows(48)


@pytest.fixture(scope="session")
def folders(tiny_lstm, tmp_path_factory):
    """(the trained model, {backend: folder}) for the tiny LSTM task model and its ONNX export."""
    model, saved = tiny_lstm
    return model, {"pytorch": saved, "onnx": export_onnx(saved, tmp_path_factory.mktemp("serve") / "onnx",
                                                         check=False)}
