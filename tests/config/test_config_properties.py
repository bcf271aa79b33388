"""Property-based tests of the config loader (hypothesis): any file or override loads or fails in one line."""

from unigen.config import load_config

from capabilities import need

need("hypothesis")

# ---------------------------------------------------------------- hostile config files (property-based)

from hypothesis import HealthCheck, given, settings  # noqa: E402 (after the capability check)
from hypothesis import strategies as st  # noqa: E402 (after the capability check)

YAML_CHUNKS = st.one_of(
    st.binary(max_size=40), st.text(max_size=30).map(str.encode),
    st.sampled_from([b"\xef\xbb\xbf", b"\r\n", b"\n", b"\x00", b"seed: 3\n", b"train:\n  epochs: 2\n",
                     b"run: {tams: [[lstm]]}\n", b"generate: {colour: red}\n", b"[" * 3000, b"&a [1]\n",
                     b"seed: *a\n", b"- 1\n", b"train: {epochs: fast}\n", b"relabel: {threshold: 7}\n",
                     b"\xe9"]))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(chunks=st.lists(YAML_CHUNKS, max_size=8))
def test_any_config_file_loads_or_fails_in_one_line(tmp_path, chunks):
    from unigen.errors import ConfigError

    path = tmp_path / "hostile.yaml"
    path.write_bytes(b"".join(chunks))
    try:
        load_config(path)
    except ConfigError as exc:  # names the file, or the setting; anything else escaping is a bug
        message = str(exc).strip()
        assert message and "\n" not in message, message


@settings(max_examples=100, deadline=None)
@given(key=st.sampled_from(["seed", "train.epochs", "run.tams", "generate.prompt_set", "relabel.threshold",
                            "evaluate.limit", "weight", "nothing.here"]),
       value=st.text(max_size=30))
def test_any_override_loads_or_fails_in_one_line(key, value):
    from unigen.errors import ConfigError

    try:
        load_config(None, [f"{key}={value}"])
    except ConfigError as exc:
        assert "\n" not in str(exc)
