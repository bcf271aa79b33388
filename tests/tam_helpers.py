"""Tiny local models and data for the task-model tests (no downloads, no embedded packages)."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np

SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
POSITIVE = ["good", "great", "excellent", "wonderful", "lovely", "superb"]
NEGATIVE = ["bad", "awful", "terrible", "boring", "horrible", "dreadful"]
FILLER = ["the", "movie", "food", "phone", "was", "is", "really", "very", "this", "it", ".", "!", "i",
          "found", "quite", "so"]
LABELS = ("negative", "positive")


def make_tiny_bert(folder: Path, layers: int = 1, model_type: str = "bert") -> Path:
    """A ``layers``-layer (default 1), 32-wide random BERT (``model_type="mpnet"``: MPNet, with the same
    WordPiece tokenizer) with a WordPiece vocabulary, saved like a Hub folder."""
    from transformers import BertConfig, BertModel, BertTokenizerFast

    folder.mkdir(parents=True, exist_ok=True)
    vocab = SPECIAL + POSITIVE + NEGATIVE + FILLER
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    tokenizer = BertTokenizerFast.from_pretrained(str(folder))
    if model_type == "mpnet":
        from transformers import MPNetConfig, MPNetModel

        mpnet = MPNetConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=layers,
                            num_attention_heads=2, intermediate_size=37, max_position_embeddings=66,
                            pad_token_id=0)
        MPNetModel(mpnet).save_pretrained(str(folder))
    else:
        config = BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=layers,
                            num_attention_heads=2, intermediate_size=37, max_position_embeddings=64)
        BertModel(config).save_pretrained(str(folder))
    tokenizer.save_pretrained(str(folder))
    return folder


def fake_vectors(dim: int = 8, seed: int = 0, sentiment: float = 0.0) -> tuple[list[str], np.ndarray]:
    """A small GloVe-like table that knows most (not all) of the test words.

    ``sentiment`` > 0 sets coordinate 0 to ``+sentiment`` for the positive words, ``-sentiment`` for the
    negative ones and 0 for the rest (as real GloVe vectors carry some polarity); 0 keeps them random.
    """
    words = POSITIVE[:-1] + NEGATIVE[:-1] + FILLER + ["unrelated", "words"]
    table = np.random.default_rng(seed).normal(size=(len(words), dim)).astype(np.float32)
    if sentiment:
        table[:, 0] = [sentiment if w in POSITIVE else -sentiment if w in NEGATIVE else 0.0 for w in words]
    return words, table


def sentiment_rows(n: int, seed: int = 0, *, weights: bool = False) -> list[dict]:
    """``n`` template sentences with soft targets (positive words -> class 1)."""
    rng = np.random.default_rng(seed)
    frames = ["the {s} was {w} .", "this {s} is really {w} !", "i found it quite {w} .", "so {w} , very {w}"]
    subjects = ["movie", "food", "phone"]
    rows = []
    for i, (frame, subj) in enumerate(
        itertools.islice(itertools.cycle(itertools.product(frames, subjects)), n)
    ):
        label = i % 2
        word = (POSITIVE if label else NEGATIVE)[int(rng.integers(len(POSITIVE)))]
        p = float(rng.uniform(0.75, 0.99))
        row = {"text": frame.format(s=subj, w=word), "probs": [1 - p, p] if label else [p, 1 - p]}
        if weights:
            row["weight"] = float(rng.uniform(0.0, 1.0))
        rows.append(row)
    return rows


def fit_briefly(model, rows: list[dict], steps: int = 60, lr: float = 3e-3):
    """A few full-batch Adam steps of soft-label cross-entropy, so the tiny model is confident (in place;
    returned in eval mode)."""
    import torch

    texts = [r["text"] for r in rows]
    targets = torch.tensor([r["probs"] for r in rows], dtype=torch.float32)
    batch = model.encode(texts)
    optimiser = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        for _ in range(steps):
            optimiser.zero_grad()
            loss = -(targets * torch.log_softmax(model(**batch).logits, dim=-1)).sum(dim=-1).mean()
            loss.backward()
            optimiser.step()
    return model.eval()


def real_texts(per_set: int = 30) -> list[str]:
    """The first ``per_set`` texts of every test set in ``../shared/datasets`` (none when it is absent)."""
    import json

    from unigen.evaluation.datasets import default_data_dir

    texts: list[str] = []
    for path in sorted((default_data_dir() / "test").glob("*.jsonl")):
        with open(path, encoding="utf-8") as f:
            for _, line in zip(range(per_set), f):
                texts.append(json.loads(line)["text"])
    return texts
