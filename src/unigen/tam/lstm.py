"""The LSTM task model's parts: a word tokenizer, GloVe initialisation and the BiLSTM encoder.

The vocabulary is built from the training texts (lower-cased, regex word tokens, min count 1, at most
``max_vocab`` entries including ``<pad>`` = 0 and ``<unk>`` = 1), following ZeroGen/SunGen's LSTM
(docs/method.md §6.4). Embeddings start from GloVe-6B-50d (the embedded ``glove-6b-50d``) and are
fine-tuned; words that GloVe lacks get small random vectors ``N(0, 0.1^2)``.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

from unigen.registry import glove_files
from unigen.stages import atomic_write_text

__all__ = [
    "PAD",
    "UNK",
    "LSTMEncoder",
    "WordTokenizer",
    "glove_embedding_matrix",
    "load_glove",
    "lstm_parameter_count",
]

PAD, UNK = "<pad>", "<unk>"
#: GloVe-friendly word pattern: ``don't`` -> ``do n't``, ``it's`` -> ``it 's``, punctuation one char each.
WORD_PATTERN = r"[^\W_]+(?=n't)|n't|'[^\W_]+|[^\W_]+|[^\w\s]|_"
DEFAULT_MAX_VOCAB = 50_000
UNKNOWN_WORD_STD = 0.1

Vectors = tuple[Sequence[str], np.ndarray]


class WordTokenizer:
    """Lower-casing regex word tokenizer with a fixed vocabulary.

    Args:
        tokens: the vocabulary in id order; ``tokens[0]`` must be ``<pad>`` and ``tokens[1]`` ``<unk>``.
        pattern: the word regex (applied to the lower-cased text).
    """

    def __init__(self, tokens: Sequence[str], pattern: str = WORD_PATTERN) -> None:
        if len(tokens) < 2 or tokens[0] != PAD or tokens[1] != UNK:
            raise ValueError(f"vocabulary must start with {PAD!r}, {UNK!r}")
        self.tokens = list(tokens)
        self.pattern = pattern
        self._regex = re.compile(pattern)
        self._ids = {t: i for i, t in enumerate(self.tokens)}
        if len(self._ids) != len(self.tokens):
            raise ValueError("vocabulary has duplicate tokens")

    @property
    def pad_token_id(self) -> int:
        return 0

    def __len__(self) -> int:
        return len(self.tokens)

    def split(self, text: str) -> list[str]:
        """Word tokens of ``text`` (lower-cased)."""
        return self._regex.findall(text.lower())

    @classmethod
    def build(cls, texts: Iterable[str], max_vocab: int = DEFAULT_MAX_VOCAB) -> WordTokenizer:
        """Vocabulary of the most frequent words of ``texts`` (ties broken alphabetically)."""
        if max_vocab < 3:
            raise ValueError("max_vocab must be at least 3")
        probe = cls([PAD, UNK])
        counts = Counter(w for t in texts for w in probe.split(t))
        counts.pop(PAD, None)
        counts.pop(UNK, None)
        words = sorted(counts, key=lambda w: (-counts[w], w))[: max_vocab - 2]
        return cls([PAD, UNK, *words])

    def encode(self, text: str, max_length: int) -> list[int]:
        """Token ids, cut to ``max_length``; an empty text becomes ``[<unk>]`` (length >= 1 for packing)."""
        ids = [self._ids.get(w, 1) for w in self.split(text)[:max_length]]
        return ids or [1]

    def batch(self, texts: Sequence[str], max_length: int) -> dict[str, torch.Tensor]:
        """``input_ids`` / ``attention_mask`` ``(N, L)`` right-padded to the longest row."""
        seqs = [self.encode(t, max_length) for t in texts]
        width = max((len(s) for s in seqs), default=1)
        ids = torch.zeros(len(seqs), width, dtype=torch.long)
        mask = torch.zeros(len(seqs), width, dtype=torch.long)
        for i, s in enumerate(seqs):
            ids[i, : len(s)] = torch.tensor(s)
            mask[i, : len(s)] = 1
        return {"input_ids": ids, "attention_mask": mask}

    def save(self, path: str | Path) -> None:
        """Write ``vocab.json`` (``{"pattern", "lowercase", "tokens"}``)."""
        payload = {"pattern": self.pattern, "lowercase": True, "tokens": self.tokens}
        atomic_write_text(path, json.dumps(payload, ensure_ascii=False))

    @classmethod
    def load(cls, path: str | Path) -> WordTokenizer:
        data = json.loads(Path(path).read_text())
        return cls(data["tokens"], data.get("pattern", WORD_PATTERN))


def load_glove() -> Vectors:
    """The embedded GloVe-6B-50d table: (400k words, ``(400000, 50)`` float32 memory map)."""
    import pyarrow.parquet as pq

    npy, parquet = glove_files()
    words = pq.read_table(parquet).column(0).to_pylist()
    return words, np.load(npy, mmap_mode="r")


def glove_embedding_matrix(
    tokens: Sequence[str], vectors: Vectors, *, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, int]:
    """Initial embedding ``(len(tokens), D)``: GloVe rows where known, ``N(0, 0.1^2)`` else, zeros for
    ``<pad>``.

    Returns:
        ``(matrix, number of tokens found in GloVe)``.
    """
    words, table = vectors
    if table.ndim != 2 or len(words) != table.shape[0]:
        raise ValueError(f"word list ({len(words)}) and vector table {table.shape} do not match")
    index = {w: i for i, w in enumerate(words)}
    matrix = torch.randn(len(tokens), table.shape[1], generator=generator) * UNKNOWN_WORD_STD
    rows = [(i, index[t]) for i, t in enumerate(tokens) if t in index and i > 1]
    if rows:
        ours, theirs = zip(*rows)
        matrix[list(ours)] = torch.from_numpy(np.asarray(table[list(theirs)], dtype=np.float32))
    matrix[0] = 0.0
    return matrix, len(rows)


class LSTMEncoder(nn.Module):
    """Embedding -> 1-layer bidirectional LSTM over packed sequences.

    The sentence vector is ``[h_fwd(T); h_bwd(1)]``, the final hidden states of both directions,
    so ``output_dim = 2 * hidden_size``.

    Args:
        vocab_size: rows of the embedding (``<pad>`` = 0).
        embed_dim: embedding size (50 for GloVe-6B-50d).
        hidden_size: LSTM units per direction.
        embedding: optional initial ``(vocab_size, embed_dim)`` weights (fine-tuned).
    """

    def __init__(self, vocab_size: int, embed_dim: int, hidden_size: int,
                 embedding: torch.Tensor | None = None) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embed_dim, padding_idx=0)
        if embedding is not None:
            with torch.no_grad():
                self.embedding.weight.copy_(embedding)
        self.lstm = nn.LSTM(embed_dim, hidden_size, num_layers=1, batch_first=True, bidirectional=True)
        self.output_dim = 2 * hidden_size

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        lengths = attention_mask.sum(dim=1).clamp_min(1).cpu()
        packed = pack_padded_sequence(self.embedding(input_ids), lengths, batch_first=True,
                                      enforce_sorted=False)
        _, (h_n, _) = self.lstm(packed)
        return torch.cat([h_n[0], h_n[1]], dim=-1)

    def reset_lstm(self) -> None:
        """Fresh random LSTM weights (the embedding is kept)."""
        self.lstm.reset_parameters()


def lstm_parameter_count(vocab_size: int, embed_dim: int, hidden_size: int, projection_dim: int,
                         num_labels: int) -> int:
    """Parameters of the LSTM task model (encoder + shared heads), computed analytically.

    ``V*E`` (embedding) ``+ 2 * (4H(E + H) + 8H)`` (BiLSTM, two bias vectors per direction)
    ``+ (2H*P + P) + 2P`` (projection Linear + LayerNorm) ``+ (P*C + C)`` (classifier).
    """
    h, p = hidden_size, projection_dim
    lstm = 2 * (4 * h * (embed_dim + h) + 8 * h)
    return vocab_size * embed_dim + lstm + (2 * h * p + p) + 2 * p + (p * num_labels + num_labels)
