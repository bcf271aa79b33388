"""An exported task model with ONNX Runtime: the same ``predict`` / ``predict_proba`` as
:class:`unigen.tam.model.TaskModel`, without torch or transformers.

Needs only ``onnxruntime``, ``numpy`` and ``tokenizers`` (``pip install unigen-sentiment[onnx]``)::

    from unigen import OnnxTaskModel

    model = OnnxTaskModel.from_pretrained("exported/")     # written by `unigen export --format onnx`
    model.predict(["what a lovely film", "never again"])    # ['positive', 'negative']
    model.predict_proba("what a lovely film")               # array([0.03, 0.97], dtype=float32)

The folder layout is described in :mod:`unigen.export.onnx_export`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from unigen.errors import ModelNotAvailable
from unigen.predictions import PredictionsMixin, check_texts
from unigen.tam.batching import padding_groups

__all__ = ["ONNX_CONFIG", "OnnxTaskModel", "is_onnx_folder"]

ONNX_CONFIG = "unigen_onnx.json"
ONNX_FORMAT = "unigen-tam-onnx"
ONNX_FORMAT_VERSION = 1


def is_onnx_folder(path: str | Path) -> bool:
    """Whether ``path`` holds an exported ONNX task model."""
    return (Path(path) / ONNX_CONFIG).is_file()


class _WordEncoder:
    """The LSTM model's word tokenizer, padded with numpy."""

    def __init__(self, path: Path, max_length: int) -> None:
        from unigen.tam.words import WordTokenizer  # pure Python, no torch

        self.tokenizer = WordTokenizer.load(path)
        self.max_length = max_length

    def __call__(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        seqs = [self.tokenizer.encode(t, self.max_length) for t in texts]
        width = max((len(s) for s in seqs), default=1)
        ids = np.zeros((len(seqs), width), dtype=np.int64)
        mask = np.zeros((len(seqs), width), dtype=np.int64)
        for i, s in enumerate(seqs):
            ids[i, : len(s)] = s
            mask[i, : len(s)] = 1
        return ids, mask


class _SubwordEncoder:
    """A Hugging Face fast tokenizer (``tokenizer.json``) with the task model's truncation and padding:
    special tokens added, cut to ``max_length`` tokens, right-padded to the longest text of the batch."""

    def __init__(self, path: Path, max_length: int, pad_id: int, pad_token: str) -> None:
        from tokenizers import Tokenizer

        self.tokenizer = Tokenizer.from_file(str(path))
        self.max_length = max_length
        self.tokenizer.enable_truncation(max_length=max_length)
        self.tokenizer.enable_padding(direction="right", pad_id=pad_id, pad_token=pad_token)

    def __call__(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        from unigen.tam.words import model_input  # as TaskModel.encode: long texts are cut first

        encodings = self.tokenizer.encode_batch([model_input(t, self.max_length) for t in texts])
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
        return ids, mask


class OnnxTaskModel(PredictionsMixin):
    """A task model exported by ``unigen export --format onnx``, run with ONNX Runtime on CPU.

    Build it with :meth:`from_pretrained`. ``labels``, ``config`` (the ``unigen_onnx.json`` record) and
    ``path`` describe it.
    """

    def __init__(self, path: Path, config: dict[str, Any], session: Any, encoder: Any) -> None:
        self.path = path
        self.config = config
        self.session = session
        self._encoder = encoder

    @classmethod
    def from_pretrained(cls, path: str | Path, *, threads: int | None = None) -> OnnxTaskModel:
        """Load an exported folder. ``threads``: ONNX Runtime's intra-op threads (default: its own choice,
        or ``$UNIGEN_ONNX_THREADS``). A folder that holds no exported model raises
        :class:`~unigen.errors.ModelNotAvailable`."""
        import onnxruntime as ort

        path = Path(path)
        config_file = path / ONNX_CONFIG
        if not config_file.is_file():
            raise ModelNotAvailable(f"{path} is not an exported ONNX task model (no {ONNX_CONFIG}); "
                                    "write one with `unigen export MODEL --format onnx --output DIR`")
        try:
            config = json.loads(config_file.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ModelNotAvailable(f"{config_file}: not a valid record ({exc})") from None
        if config.get("format") != ONNX_FORMAT or config.get("format_version", 0) > ONNX_FORMAT_VERSION:
            raise ModelNotAvailable(f"{config_file}: unsupported format {config.get('format')!r} "
                                    f"version {config.get('format_version')!r}")
        recorded = config.get("sha256")
        if recorded is not None:  # exports written before the record carried sha256s are loaded unchecked
            from unigen.files import verify_files

            problems = verify_files(path, recorded) if isinstance(recorded, dict) else ["sha256 is not a map"]
            if problems:
                raise ModelNotAvailable(f"{path}: {problems[0]} against {ONNX_CONFIG}; the export is "
                                        "damaged: export it again or copy it again")
        tok = config["tokenizer"]
        if tok["kind"] == "words":
            encoder: Any = _WordEncoder(path / tok["file"], config["max_length"])
        else:
            encoder = _SubwordEncoder(path / tok["file"], config["max_length"], tok["pad_id"],
                                      tok["pad_token"])
        options = ort.SessionOptions()
        threads = threads or int(os.environ.get("UNIGEN_ONNX_THREADS", "0"))
        if threads:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        session = ort.InferenceSession(str(path / config["model"]), options,
                                       providers=["CPUExecutionProvider"])
        return cls(path, config, session, encoder)

    @property
    def labels(self) -> tuple[str, ...]:
        return tuple(self.config["labels"])

    @property
    def max_length(self) -> int:
        return int(self.config["max_length"])

    def encode(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        """``{"input_ids", "attention_mask"}`` ``(N, L)`` int64 arrays, as the graph takes them."""
        ids, mask = self._encoder(list(texts))
        return {"input_ids": ids, "attention_mask": mask}

    def predict_proba(self, texts: str | Sequence[str], *, batch_size: int = 64) -> np.ndarray:
        """Class probabilities: ``(N, C)`` for a list of texts, ``(C,)`` for a single string.

        As :meth:`TaskModel.predict_proba`: batches of texts of similar length (cut further by token length,
        :func:`~unigen.tam.batching.padding_groups`), results in input order.
        """
        single = isinstance(texts, str)
        items = [texts] if single else list(texts)
        check_texts(items)
        out = np.zeros((len(items), len(self.labels)), dtype=np.float32)
        order = np.argsort([len(t) for t in items], kind="stable")
        for start in range(0, len(items), batch_size):
            idx = order[start : start + batch_size]
            encoded = self.encode([items[i] for i in idx])
            for rows, width in padding_groups(encoded["attention_mask"]):
                inputs = {k: v[rows, :width] for k, v in encoded.items()}
                (probs,) = self.session.run(["probabilities"], inputs)
                out[idx[rows]] = probs
        return out[0] if single else out
