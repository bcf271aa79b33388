"""The embedded models, loaded for real from their PyPI packages (slow; CI runs it)."""

import numpy as np
import pytest
import torch

from unigen import registry
from unigen.config import ScoringConfig
from unigen.synth.scoring import LMScorer

pytestmark = pytest.mark.slow

POSITIVE = [
    "I absolutely loved this movie, it was wonderful!",
    "Great product, works perfectly and I am very happy.",
    "The food was delicious and the staff were friendly.",
    "Best purchase I have made all year, highly recommend.",
]
NEGATIVE = ["This was the worst movie I have ever seen.", "Terrible product, it broke after one day.",
            "The food was cold and the waiter was rude.", "Awful experience, I want my money back."]


def margins(scorer, rule):
    scores = scorer.scores(POSITIVE + NEGATIVE, rule=rule)
    return scores[:, 0] - scores[:, 1]  # > 0: positive is the more likely label


@pytest.mark.parametrize("name", ["smollm2-135m", "gemma3-270m"])
def test_generators_rank_obvious_sentences(name):
    scorer = LMScorer.from_name(name, ("negative", "positive"), ScoringConfig(), device="cpu")
    for rule in ("nll", "verbalizer"):
        m = margins(scorer, rule)
        assert m[:4].min() > m[4:].max(), (rule, m)  # every positive above every negative
    if name == "smollm2-135m":  # the calibrated verbalizer also gets (nearly) all signs right
        correct = (margins(scorer, "verbalizer") > 0) == np.array([True] * 4 + [False] * 4)
        assert correct.sum() >= 7


@pytest.mark.parametrize("name", ["minilm-l6", "mpnet-base"])
def test_encoders_embed_meaningfully(name):
    from transformers import AutoModel, AutoTokenizer

    path = registry.resolve(name)
    tok, model = AutoTokenizer.from_pretrained(path), AutoModel.from_pretrained(path).eval()
    batch = tok(["the movie was great", "the film was wonderful", "interest rates rose again"],
                padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1)
    emb = torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1)
    assert emb[0] @ emb[1] > emb[0] @ emb[2] + 0.2


def test_glove_neighbours():
    import pyarrow.parquet as pq

    vectors_path, words_path = registry.glove_files()
    words = pq.read_table(words_path).column("index").to_pylist()
    vectors = np.load(vectors_path, mmap_mode="r")
    assert vectors.shape == (400_000, 50) and words[0] == "the"
    index = {w: i for i, w in enumerate(words)}
    v = np.asarray(vectors[[index["terrible"], index["horrible"], index["keyboard"]]])
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    assert v[0] @ v[1] > 0.8 > v[0] @ v[2]
