"""Property-based tests of prediction (hypothesis): any stdin bytes, any texts."""

from __future__ import annotations

import numpy as np

from unigen.tam.model import TaskModel

from capabilities import need
from tam_helpers import LABELS, fake_vectors, sentiment_rows

TEXTS = [r["text"] for r in sentiment_rows(12)]

need("hypothesis")

from hypothesis import HealthCheck, given, settings  # noqa: E402 (after the capability check)
from hypothesis import strategies as st  # noqa: E402 (after the capability check)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lines=st.lists(st.binary(max_size=50) | st.text(max_size=30).map(str.encode)
                      | st.sampled_from([b"\xef\xbb\xbf", b"\r", b"\x00", b"\xe9"]), max_size=6))
def test_predict_stdin_reads_texts_or_names_the_line(lines):
    """Stdin as ``unigen predict`` reads it (:mod:`unigen.textfiles`): one row per line, a line that is not
    UTF-8 an error naming it, never a traceback."""
    import io
    import sys

    from unigen.errors import DataError
    from unigen.textfiles import open_texts

    data = b"\n".join(lines)
    saved = sys.stdin
    sys.stdin = io.TextIOWrapper(io.BytesIO(data))
    try:
        rows = list(open_texts("-", format="txt"))
    except DataError as exc:
        assert str(exc).startswith("<stdin>") and "\n" not in str(exc)
        return
    finally:
        sys.stdin = saved
    assert all(isinstance(r.text, str) and "\n" not in r.text for r in rows)
    assert len(rows) == data.count(b"\n") + (not data.endswith(b"\n"))


@settings(max_examples=60, deadline=None)
@given(texts=st.lists(st.text(max_size=300), min_size=1, max_size=5))
def test_predict_answers_any_text(texts):
    probs = _lstm_for_hypothesis().predict_proba(texts)
    assert probs.shape == (len(texts), 2) and np.isfinite(probs).all() and np.allclose(probs.sum(axis=1), 1)


_MODEL: list = []


def _lstm_for_hypothesis():
    if not _MODEL:
        _MODEL.append(TaskModel.build("lstm", LABELS, texts=TEXTS, vectors=fake_vectors(), lstm_hidden=8,
                                      projection_dim=16, seed=0).eval())
    return _MODEL[0]
