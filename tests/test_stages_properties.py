"""Property-based test of the JSONL reader (hypothesis): any lines load or name the file and line."""

from __future__ import annotations

from capabilities import need

need("hypothesis")

# ---------------------------------------------------------------- hostile JSONL (property-based)

from hypothesis import HealthCheck, given, settings  # noqa: E402 (after the capability check)
from hypothesis import strategies as st  # noqa: E402 (after the capability check)

LINES = st.one_of(
    st.binary(max_size=200),
    st.text(max_size=100).map(lambda t: t.encode("utf-8", "surrogatepass")),
    st.sampled_from([b"\xef\xbb\xbf", b"\r\n", b"\x00", b"[" * 5000, b'{"a": 1}', b'"\\ud800"', b"\xff\xfe"]),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lines=st.lists(LINES, max_size=8))
def test_iter_jsonl_loads_or_names_file_and_line(tmp_path, lines):
    from unigen.errors import DataError
    from unigen.files import iter_jsonl

    path = tmp_path / "hostile.jsonl"
    path.write_bytes(b"\n".join(lines))
    try:
        for where, _ in iter_jsonl(path):
            assert where.startswith(f"{path}:")
    except DataError as exc:
        message = str(exc)
        assert message.startswith(f"{path}:") and "\n" not in message and len(message) < 400
