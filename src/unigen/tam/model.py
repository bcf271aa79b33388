"""Task models (TAMs): an encoder plus UniGen's shared projection/classifier heads (docs/method.md §6.4).

Architecture, for an encoder giving a sentence vector ``h`` of size ``d``::

    z      = LayerNorm(tanh(W_p h + b_p))        # (B, 256): the contrastive feature
    logits = W_c tanh(z) + b_c                    # (B, C)

Encoders:

* ``lstm``: GloVe-initialised embedding -> 1-layer BiLSTM (packed), ``h = [h_fwd; h_bwd]``
  (:mod:`unigen.tam.lstm`); the vocabulary comes from the training texts.
* any Hugging Face encoder (registry name such as ``minilm-l6`` / ``mpnet-base``, a local folder or a
  Hub id such as ``distilbert-base-uncased``): ``h`` = the last hidden state of the first token
  ([CLS] / <s>).

:class:`TaskModel` is both the ``nn.Module`` that is trained (``model(**model.encode(texts))``
returns :class:`TAMOutput` with ``.logits`` and ``.features``) and the saved product
(:meth:`TaskModel.save_pretrained` / :meth:`TaskModel.from_pretrained`, :meth:`TaskModel.predict`).
A saved folder holds ``unigen_tam.json``, ``model.safetensors``, a ``README.md`` model card
(:mod:`unigen.tam.model_card`) and either ``vocab.json`` (LSTM) or the tokenizer files plus
``encoder/config.json`` (transformers); it loads without the original encoder
package or the Hub, and nothing in it is a pickle.

For SunGen's weighting loop, which needs a factory returning the same initial weights on every call::

    base = TaskModel.build("lstm", labels, texts=texts, seed=0)   # untrained
    inputs = base.encode(texts)                                   # dict of (N, L) tensors
    learn_sample_weights(base.fresh_copy, inputs, targets, ...)
"""

from __future__ import annotations

import contextlib
import copy
import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from unigen import __version__
from unigen.config import TrainConfig
from unigen.errors import ModelNotAvailable
from unigen.files import atomic_folder, hashed_files, verify_files
from unigen.predictions import PredictionsMixin, check_texts
from unigen.registry import from_pretrained, resolve
from unigen.tam.batching import padding_groups
from unigen.tam.lstm import LSTMEncoder, Vectors, WordTokenizer, glove_embedding_matrix, load_glove
from unigen.tam.words import model_input

__all__ = ["TAMOutput", "TAMSpec", "TaskModel", "TransformerEncoder"]

FORMAT = "unigen-tam"
FORMAT_VERSION = 1
CONFIG_NAME = "unigen_tam.json"
WEIGHTS_NAME = "model.safetensors"
VOCAB_NAME = "vocab.json"
ENCODER_SUBDIR = "encoder"


@dataclass
class TAMOutput:
    """``logits`` ``(B, C)`` and the projected contrastive ``features`` ``(B, projection_dim)``."""

    logits: torch.Tensor
    features: torch.Tensor


@dataclass(frozen=True)
class TAMSpec:
    """What ``unigen_tam.json`` records about a task model."""

    architecture: str  # "lstm" | "transformer"
    encoder: str  # the name or path it was built from
    labels: tuple[str, ...]
    max_length: int = 40  # records written before these were recorded: the sizes of that time
    projection_dim: int = 256
    vocab_size: int | None = None  # LSTM only
    embed_dim: int | None = None  # LSTM only
    hidden_size: int | None = None  # LSTM only: units per direction
    pooling: str = "cls"  # transformer only: cls | mean (records written before it existed are cls)

    def __post_init__(self) -> None:
        if self.architecture not in ("lstm", "transformer"):
            raise ValueError(f"unknown TAM architecture {self.architecture!r}")
        if len(self.labels) < 2:
            raise ValueError("a task model needs at least two labels")


class TransformerEncoder(nn.Module):
    """Wraps a Hugging Face ``AutoModel``; the sentence vector ``h`` comes from its last hidden states ``H``.

    ``pooling="cls"`` (the paper): ``h = H[:, 0]``, the first token ([CLS] / <s>).
    ``pooling="mean"``: ``h = sum_t m_t H[:, t] / sum_t m_t`` over the attention mask ``m``, the pooling
    sentence-transformers encoders such as all-MiniLM-L6-v2 were trained with.
    """

    def __init__(self, model: nn.Module, pooling: str = "cls") -> None:
        super().__init__()
        if pooling not in ("cls", "mean"):
            raise ValueError(f"unknown pooling {pooling!r}: use cls or mean")
        self.model = model
        self.pooling = pooling
        self.output_dim = int(model.config.hidden_size)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        if self.pooling == "cls":
            return hidden[:, 0]
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)


@contextlib.contextmanager
def _seeded(seed: int | None) -> Iterator[None]:
    """Run the block with the CPU torch RNG seeded (caller's RNG state restored after)."""
    if seed is None:
        yield
        return
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


class TaskModel(nn.Module, PredictionsMixin):
    """A sentiment task model: encoder + projection head + classifier, with its tokenizer.

    Build one with :meth:`build`, load a saved one with :meth:`from_pretrained`.

    Args:
        spec: the architecture record.
        encoder: a module mapping ``(input_ids, attention_mask)`` to ``(B, d)``, with ``output_dim``.
        tokenizer: a :class:`~unigen.tam.lstm.WordTokenizer` (LSTM) or a Hugging Face tokenizer.
    """

    def __init__(self, spec: TAMSpec, encoder: nn.Module, tokenizer: Any) -> None:
        super().__init__()
        self.spec = spec
        self.encoder = encoder
        self.tokenizer = tokenizer
        if spec.architecture == "transformer":
            tokenizer.padding_side = "right"
        p = spec.projection_dim
        self.projection = nn.Sequential(nn.Linear(encoder.output_dim, p), nn.Tanh(), nn.LayerNorm(p))
        self.classifier = nn.Sequential(nn.Tanh(), nn.Linear(p, len(spec.labels)))

    # ------------------------------------------------------------------ construction

    @classmethod
    def build(cls, tam: str, labels: Sequence[str], *, texts: Sequence[str] | None = None,
              max_length: int | None = None, projection_dim: int | None = None,
              lstm_hidden: int | None = None,
              max_vocab: int = 50_000, vectors: Vectors | None = None, seed: int | None = None,
              pooling: str = "cls") -> TaskModel:
        """A new, untrained task model (on CPU). :meth:`from_config` builds one from the training settings.

        Args:
            tam: ``"lstm"`` or an encoder name / folder / Hub id (see :func:`unigen.registry.resolve`).
            labels: label names, index = class id.
            texts: training texts; required for the LSTM (its vocabulary is built from them).
            max_length: the model's token limit (``spec.max_length``: what :meth:`encode` cuts to unless told
                otherwise); default ``train.max_length``'s default.
            projection_dim: size of the contrastive feature; default ``train.projection_dim``'s.
            lstm_hidden: LSTM units per direction; default ``train.lstm_hidden``'s.
            max_vocab: LSTM vocabulary cap (including ``<pad>``, ``<unk>``).
            vectors: LSTM word vectors ``(words, (V, D) array)``; default: the embedded GloVe-6B-50d.
            seed: seeds every random initialisation (heads, unknown-word vectors, LSTM).
            pooling: transformer sentence vector, ``cls`` or ``mean`` (:class:`TransformerEncoder`).
        """
        labels = tuple(labels)
        defaults = TrainConfig()
        max_length = defaults.max_length if max_length is None else max_length
        projection_dim = defaults.projection_dim if projection_dim is None else projection_dim
        lstm_hidden = defaults.lstm_hidden if lstm_hidden is None else lstm_hidden
        with _seeded(seed):
            if tam == "lstm":
                if texts is None:
                    raise ValueError("the LSTM task model needs the training texts to build its vocabulary")
                tokenizer = WordTokenizer.build(texts, max_vocab)
                matrix, _ = glove_embedding_matrix(tokenizer.tokens, vectors or load_glove())
                spec = TAMSpec("lstm", "lstm", labels, max_length, projection_dim,
                               len(tokenizer), matrix.shape[1], lstm_hidden)
                encoder: nn.Module = LSTMEncoder(len(tokenizer), matrix.shape[1], lstm_hidden, matrix)
            else:
                from transformers import AutoModel, AutoTokenizer

                path = resolve(tam)
                tokenizer = from_pretrained(AutoTokenizer, path)
                encoder = TransformerEncoder(from_pretrained(AutoModel, path, dtype=torch.float32), pooling)
                spec = TAMSpec("transformer", tam, labels, max_length, projection_dim, pooling=pooling)
            return cls(spec, encoder, tokenizer)

    @classmethod
    def from_config(cls, config: TrainConfig, labels: Sequence[str], *, tam: str | None = None,
                    texts: Sequence[str] | None = None, vectors: Vectors | None = None,
                    seed: int | None = None, pooling: str | None = None) -> TaskModel:
        """A new, untrained task model shaped by the training settings: encoder ``tam`` (default
        ``config.tam``), ``config.projection_dim``, ``config.lstm_hidden``, ``pooling`` (default
        ``config.pooling``) and the prediction limit ``config.predict_max_length`` (else
        ``config.max_length``) saved with it. Training inputs are cut to ``config.max_length`` by the caller
        (``encode(texts, config.max_length)``): ``train.max_length`` is always the training limit."""
        return cls.build(config.tam if tam is None else tam, labels, texts=texts,
                         max_length=config.predict_max_length or config.max_length,
                         projection_dim=config.projection_dim, lstm_hidden=config.lstm_hidden,
                         vectors=vectors, seed=seed, pooling=config.pooling if pooling is None else pooling)

    def fresh_copy(self) -> TaskModel:
        """An independent deep copy with the current weights (a ``make_model`` factory for SunGen)."""
        return copy.deepcopy(self)

    @property
    def num_layers(self) -> int | None:
        """The transformer encoder's number of layers (None for the LSTM)."""
        if self.spec.architecture != "transformer":
            return None
        return int(self.encoder.model.config.num_hidden_layers)

    def with_layers(self, n: int) -> TaskModel:
        """An independent copy keeping ``n`` of the encoder's ``L`` transformer layers, evenly spaced and
        always including the last (the student of ``adapt.student=teacher``, as DistilBERT is initialised
        from every other layer of its teacher)::

            kept = [round(i * (L - 1) / (n - 1)) for i in range(n)]     (Python round; n = 1: [L - 1])

        e.g. 6 of 12 layers keeps 0, 2, 4, 7, 9, 11. Everything else is copied as it is: the embeddings, the
        kept layers, encoder-level modules such as MPNet's shared relative attention bias, the pooler, the
        projection and classifier heads, the tokenizer and ``spec``. The copy's Hugging Face config has
        ``num_hidden_layers = n``, so :meth:`save_pretrained` writes it to ``encoder/config.json`` and
        :meth:`from_pretrained` builds ``n`` layers. ``n = L`` is an exact copy. The copy is on this
        model's device, in its train/eval mode.

        Raises ValueError for the LSTM, ``n < 1`` or ``n > L``, or an encoder whose layer list is not
        found (a ``ModuleList`` of ``L`` modules named ``...layer`` or ``...layers``).
        """
        from unigen.tam.layers import keep_layers

        return keep_layers(self, n)

    def reinitialise_heads(self) -> None:
        """New random projection/classifier weights (and LSTM weights for the LSTM; embeddings kept).

        Used for the paper code's independently initialised momentum model (docs/method.md §9, SCL).
        """
        for module in (*self.projection, *self.classifier):
            if hasattr(module, "reset_parameters"):
                module.reset_parameters()
        if isinstance(self.encoder, LSTMEncoder):
            self.encoder.reset_lstm()

    # ------------------------------------------------------------------ forward / encode

    @property
    def labels(self) -> tuple[str, ...]:
        return self.spec.labels

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> TAMOutput:
        """``input_ids``/``attention_mask`` ``(B, L)`` -> :class:`TAMOutput` (logits, features)."""
        features = self.projection(self.encoder(input_ids, attention_mask))
        return TAMOutput(logits=self.classifier(features), features=features)

    def encode(self, texts: Sequence[str], max_length: int | None = None) -> dict[str, torch.Tensor]:
        """Tokenise: ``{"input_ids", "attention_mask"}`` ``(N, L)`` CPU tensors, right-padded to the
        longest, cut to ``max_length`` tokens (default: the model's prediction limit ``spec.max_length``).

        Longer texts are truncated, never rejected (the model card says so); only their first
        :func:`~unigen.tam.words.max_chars` characters are tokenised, so memory stays bounded
        (:func:`~unigen.tam.words.model_input`)."""
        limit = max_length or self.spec.max_length
        texts = list(texts)
        if self.spec.architecture == "lstm":
            return self.tokenizer.batch(texts, limit)
        texts = [model_input(t, limit) for t in texts]  # longer texts are truncated, never rejected
        enc = self.tokenizer(texts, padding="longest", truncation=True, max_length=limit,
                             return_tensors="pt", return_token_type_ids=False)
        return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}

    # ------------------------------------------------------------------ prediction

    @torch.no_grad()
    def _outputs(self, items: list[str], batch_size: int, pick: Callable[[TAMOutput], torch.Tensor],
                 width: int) -> np.ndarray:
        """``pick(output)`` for every text, in eval mode (mode restored after), in the input order.

        Batches are formed from texts of similar length (sorted by characters), and a batch whose token
        lengths still differ much is cut further into forward passes by
        :func:`~unigen.tam.batching.length_groups`, so little of each pass is padding; padding is
        masked, so the grouping changes nothing but the speed.
        """
        check_texts(items)
        was_training = self.training
        self.eval()
        out = np.zeros((len(items), width), dtype=np.float32)
        order = np.argsort([len(t) for t in items], kind="stable")
        try:
            for start in range(0, len(items), batch_size):
                idx = order[start : start + batch_size]
                encoded = self.encode([items[i] for i in idx])
                for rows, width in padding_groups(encoded["attention_mask"].numpy()):
                    batch = {k: v[rows, :width].to(self.device) for k, v in encoded.items()}
                    out[idx[rows]] = pick(self(**batch)).float().cpu().numpy()
        finally:
            self.train(was_training)
        return out

    def predict_proba(self, texts: str | Sequence[str], *, batch_size: int = 64) -> np.ndarray:
        """Class probabilities: ``(N, C)`` for a list of texts, ``(C,)`` for a single string."""
        single = isinstance(texts, str)
        probs = self._outputs([texts] if single else list(texts), batch_size,
                              lambda out: torch.softmax(out.logits.float(), dim=-1), len(self.labels))
        return probs[0] if single else probs

    def logits(self, texts: Sequence[str], *, batch_size: int = 64) -> np.ndarray:
        """The classifier's logits ``(N, C)`` (before the softmax) of the texts."""
        return self._outputs(list(texts), batch_size, lambda out: out.logits.float(), len(self.labels))

    def embed(self, texts: Sequence[str], *, batch_size: int = 64) -> np.ndarray:
        """The contrastive features (projection-head output) ``(N, projection_dim)`` of the texts."""
        return self._outputs(list(texts), batch_size, lambda out: out.features, self.spec.projection_dim)

    # ------------------------------------------------------------------ persistence

    def save_pretrained(self, path: str | Path, *, training: dict[str, Any] | None = None) -> Path:
        """Write the model folder (safetensors weights, JSON config, tokenizer, ``README.md`` model card);
        returns its path.

        Every file is written atomically (:func:`unigen.files.atomic_folder`): a killed or failed save
        leaves whole files only, and ``unigen_tam.json``, written last, records the sha256 of the others,
        which :meth:`from_pretrained` checks.

        Args:
            path: the folder (created if needed; existing files of the same names are replaced).
            training: optional JSON-able record stored in the config and shown in the model card: e.g.
                ``rows``, ``seed``, ``epochs``, ``best_epoch``, ``best_valid_acc``, ``history``,
                ``settings`` (the train settings) and ``data`` (how the rows were made,
                :func:`unigen.stages.training_data_record`).
        """
        from safetensors.torch import save_model

        from unigen.tam.model_card import write_model_card

        path = Path(path)
        with atomic_folder(path, last=CONFIG_NAME) as tmp:
            if self.spec.architecture == "lstm":
                self.tokenizer.save(tmp / VOCAB_NAME)
            else:
                self.tokenizer.save_pretrained(str(tmp))
                self.encoder.model.config.save_pretrained(str(tmp / ENCODER_SUBDIR))
            save_model(self, str(tmp / WEIGHTS_NAME), metadata={"format": "pt"})
            record = {"format": FORMAT, "format_version": FORMAT_VERSION, "unigen_version": __version__,
                      **asdict(self.spec), "num_labels": len(self.labels),
                      "parameters": sum(p.numel() for p in self.parameters()), "sha256": hashed_files(tmp)}
            if training is not None:
                record["training"] = training
            (tmp / CONFIG_NAME).write_text(json.dumps(record, indent=2), encoding="utf-8")
        write_model_card(path)
        return path

    @classmethod
    def from_pretrained(cls, path: str | Path, *, device: str | torch.device = "cpu") -> TaskModel:
        """Load a folder written by :meth:`save_pretrained` (eval mode, on ``device``).

        ``path`` may also be a train stage folder (``04_train/<fingerprint>``), whose ``model/`` is loaded.
        Nothing is ever unpickled: the weights are safetensors, everything else JSON or tokenizer files. A
        missing folder, one that holds no task model, one with pickle files, files that do not match the
        sha256s in ``unigen_tam.json``, or weights that do not fit its config raise
        :class:`ModelNotAvailable`.
        """
        path = Path(path)
        if not path.is_dir():
            raise ModelNotAvailable(
                f"{path}: no such folder (expected a task model written by `unigen train`)"
            )
        if not (path / CONFIG_NAME).is_file() and (path / "model" / CONFIG_NAME).is_file():
            path = path / "model"  # a train stage folder
        record = _read_record(path)
        try:
            return cls._from_record(path, record).to(device).eval()
        except (KeyError, TypeError, ValueError, RuntimeError, OSError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ModelNotAvailable(f"{path}: the files do not make the model {CONFIG_NAME} describes "
                                    f"({type(exc).__name__}: {first[:300]})") from None

    @classmethod
    def _from_record(cls, path: Path, record: dict[str, Any]) -> TaskModel:
        from safetensors.torch import load_model

        fields = {k: record[k] for k in TAMSpec.__dataclass_fields__ if k in record}
        spec = TAMSpec(**{**fields, "labels": tuple(record["labels"])})
        if spec.architecture == "lstm":
            tokenizer: Any = WordTokenizer.load(path / VOCAB_NAME)
            encoder: nn.Module = LSTMEncoder(spec.vocab_size, spec.embed_dim, spec.hidden_size)
        else:
            from transformers import AutoConfig, AutoModel, AutoTokenizer

            tokenizer = AutoTokenizer.from_pretrained(str(path), use_fast=True, trust_remote_code=False)
            hf_config = AutoConfig.from_pretrained(str(path / ENCODER_SUBDIR), trust_remote_code=False)
            encoder = TransformerEncoder(AutoModel.from_config(hf_config, dtype=torch.float32), spec.pooling)
        model = cls(spec, encoder, tokenizer)
        load_model(model, str(path / WEIGHTS_NAME), strict=True)
        return model


#: file endings of pickles (and formats that wrap them); a task-model folder holding one is refused
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".joblib", ".npy", ".npz")


def _read_record(path: Path) -> dict[str, Any]:
    """The checked ``unigen_tam.json`` of a model folder: format, no pickles, the files' sha256s."""
    config_file = path / CONFIG_NAME
    if not config_file.is_file():
        raise ModelNotAvailable(f"{path} is not a UniGen task-model folder (no {CONFIG_NAME})")
    try:
        record = json.loads(config_file.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise ModelNotAvailable(f"{config_file}: not a valid task-model record ({exc})") from None
    if not isinstance(record, dict):
        raise ModelNotAvailable(f"{config_file}: not a valid task-model record (not a JSON object)")
    if record.get("format") != FORMAT or not isinstance(record.get("format_version", 0), int) \
            or record.get("format_version", 0) > FORMAT_VERSION:
        raise ModelNotAvailable(f"{config_file}: unsupported format {record.get('format')!r} "
                                f"version {record.get('format_version')!r}")
    pickles = sorted(p.relative_to(path).as_posix() for p in path.rglob("*")
                     if p.is_file() and p.suffix.lower() in PICKLE_SUFFIXES)
    if pickles:
        raise ModelNotAvailable(f"{path} holds pickle file(s) {', '.join(pickles[:3])}: a task model is "
                                f"safetensors and JSON only, and pickles are never loaded; remove them")
    if not (path / WEIGHTS_NAME).is_file():
        raise ModelNotAvailable(f"{path}: {WEIGHTS_NAME} is missing")
    recorded = record.get("sha256")
    if recorded is not None:  # folders saved before the record carried sha256s are loaded unchecked
        if not isinstance(recorded, dict):
            raise ModelNotAvailable(f"{config_file}: 'sha256' must map file names to digests")
        problems = verify_files(path, recorded)
        if problems:
            raise ModelNotAvailable(f"{path}: {problems[0]} against {CONFIG_NAME}; the folder is damaged: "
                                    "train again or copy it again")
    return record
