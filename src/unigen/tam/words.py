"""The LSTM task model's word tokenizer: lower-cased regex word tokens over a fixed vocabulary.

It needs nothing outside the standard library (:meth:`WordTokenizer.batch` imports torch to make tensors),
so the exported ONNX model (:mod:`unigen.export.onnx_model`) tokenises with exactly the same code as the
PyTorch model.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

__all__ = ["DEFAULT_MAX_VOCAB", "PAD", "UNK", "WORD_PATTERN", "WordTokenizer", "max_chars", "model_input"]

PAD, UNK = "<pad>", "<unk>"
#: GloVe-friendly word pattern: ``don't`` -> ``do n't``, ``it's`` -> ``it 's``, punctuation one char each.
WORD_PATTERN = r"[^\W_]+(?=n't)|n't|'[^\W_]+|[^\W_]+|[^\w\s]|_"
DEFAULT_MAX_VOCAB = 50_000


def max_chars(max_length: int) -> int:
    """Characters of a text read for a ``max_length``-token limit: texts are cut to this before tokenising,
    so a 10 MB input costs no more than a long review. Far beyond ``max_length`` tokens of any real text
    (64 characters a token), so it never changes the tokens that are kept."""
    return 64 * max_length + 1024


def model_input(text: str, max_length: int) -> str:
    """``text`` as a model reads it: cut to :func:`max_chars`, and surrogate code points (from
    ``surrogateescape`` decoding or JSON escapes) paired up or replaced by U+FFFD, which tokenizers need."""
    text = text[: max_chars(max_length)]
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    return text


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
        ids = [self._ids.get(w, 1) for w in self.split(model_input(text, max_length))[:max_length]]
        return ids or [1]

    def batch(self, texts: Sequence[str], max_length: int) -> dict[str, torch.Tensor]:
        """``input_ids`` / ``attention_mask`` ``(N, L)`` right-padded to the longest row."""
        import torch

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
        from unigen.files import atomic_write_text  # the file reader above stays standard-library only

        payload = {"pattern": self.pattern, "lowercase": True, "tokens": self.tokens}
        atomic_write_text(path, json.dumps(payload, ensure_ascii=False))

    @classmethod
    def load(cls, path: str | Path) -> WordTokenizer:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        return cls(data["tokens"], data.get("pattern", WORD_PATTERN))
