"""Property-based tests of the test-set readers (hypothesis): any bytes load or fail naming the file."""

import json

from unigen.evaluation.datasets import read_rows

from capabilities import need

need("hypothesis")

# ---------------------------------------------------------------- hostile files (property-based)

from hypothesis import HealthCheck, given, settings  # noqa: E402 (after the capability check)
from hypothesis import strategies as st  # noqa: E402 (after the capability check)

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=3)
    | st.dictionaries(st.text(max_size=6), children, max_size=3),
    max_leaves=10)
ROWS = st.dictionaries(st.sampled_from(["text", "label", "extra", "Text"]),
                       JSON_VALUES
                       | st.sampled_from(["positive", "negative", "neutral", "1", "0", " 1 ", "-1"]),
                       max_size=4)
CHUNKS = st.one_of(st.binary(max_size=60), st.text(max_size=40).map(str.encode),
                   st.sampled_from([b"\xef\xbb\xbf", b"\r\n", b"\n", b"\r", b"\x00", b",", b'"',
                                    b"text,label\n", b'{"text": "ok", "label": 1}\n', b"\xe9"]))


def _check(path, call):
    from unigen.errors import DataError

    try:
        texts, labels = call()
    except DataError as exc:
        message = str(exc)
        assert message.startswith(str(path)) and "\n" not in message and len(message) < 400
        return
    assert len(texts) == len(labels) > 0 and all(isinstance(t, str) and t.strip() for t in texts)
    assert set(labels) <= {0, 1}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(chunks=st.lists(CHUNKS, max_size=12), suffix=st.sampled_from([".jsonl", ".csv"]))
def test_any_bytes_load_or_fail_naming_the_file(tmp_path, chunks, suffix):
    path = tmp_path / f"hostile{suffix}"
    path.write_bytes(b"".join(chunks))
    _check(path, lambda: read_rows(path))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(ROWS | JSON_VALUES, min_size=1, max_size=6), crlf=st.booleans())
def test_any_json_rows_load_or_fail_naming_file_and_line(tmp_path, rows, crlf):
    path = tmp_path / "rows.jsonl"
    path.write_text("".join(json.dumps(r) + ("\r\n" if crlf else "\n") for r in rows))
    from unigen.errors import DataError

    try:
        texts, labels = read_rows(path)
    except DataError as exc:
        assert str(exc).startswith(f"{path}:") and "\n" not in str(exc) and len(str(exc)) < 400
        return
    assert len(texts) == len(rows)
