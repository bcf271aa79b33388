"""The LSTM task model's parts: GloVe initialisation and the BiLSTM encoder (the word tokenizer is in
:mod:`unigen.tam.words`, which needs no torch, and is re-exported here).

The vocabulary is built from the training texts (lower-cased, regex word tokens, min count 1, at most
``max_vocab`` entries including ``<pad>`` = 0 and ``<unk>`` = 1), following ZeroGen/SunGen's LSTM
(docs/method.md §6.4). Embeddings start from GloVe-6B-50d (the embedded ``glove-6b-50d``) and are
fine-tuned; words that GloVe lacks get small random vectors ``N(0, 0.1^2)``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

from unigen.registry import glove_files
from unigen.tam.words import PAD, UNK, WordTokenizer

__all__ = [
    "PAD",
    "UNK",
    "LSTMEncoder",
    "WordTokenizer",
    "glove_embedding_matrix",
    "load_glove",
    "lstm_parameter_count",
]

UNKNOWN_WORD_STD = 0.1

Vectors = tuple[Sequence[str], np.ndarray]


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
