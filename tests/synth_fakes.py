"""Shared helpers of the synthetic-data tests: a tiny tokenizer, tiny random LMs, fake sampler/scorer."""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np
import torch

from unigen.synth.sampling import Continuation

CORPUS = [
    'The text in positive sentiment is: "I loved this movie, it was great!"\n',
    'The text in negative sentiment is: "The food was cold and the waiter was rude."\n',
    "A great product. Terrible battery. Nice screen, bad sound.\n",
    'She said "wow" and left. Good service, fast delivery, awful packaging.\n',
]


@functools.lru_cache(maxsize=1)
def tiny_tokenizer():
    """Byte-level BPE trained in memory on a few sentences (~300 tokens), with an EOS/pad token."""
    from tokenizers import ByteLevelBPETokenizer
    from transformers import PreTrainedTokenizerFast

    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(CORPUS * 4, vocab_size=300, min_frequency=2, special_tokens=["<eos>"])
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe._tokenizer, eos_token="<eos>", pad_token="<eos>")
    return tok


def tiny_llama(seed: int = 0):
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = tiny_tokenizer()
    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                      eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, bos_token_id=None)
    return LlamaForCausalLM(cfg).eval(), tok


def tiny_gpt2(seed: int = 0):
    from transformers import GPT2Config, GPT2LMHeadModel

    tok = tiny_tokenizer()
    torch.manual_seed(seed)
    cfg = GPT2Config(
        vocab_size=len(tok),
        n_embd=32,
        n_layer=2,
        n_head=4,
        n_positions=128,
        eos_token_id=tok.eos_token_id,
        bos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    return GPT2LMHeadModel(cfg).eval(), tok


class Killed(RuntimeError):
    """Raised by the fakes to simulate a process killed mid-run."""


class FakeSampler:
    """Continuation of row seed ``s`` is ``POOL[s % len(POOL)]`` plus the prompt's label word.

    The pool has duplicates, empties and prompt echoes. ``fail_after`` calls raise :class:`Killed`.
    """

    POOL = ['good movie {w}" trailing', "bad food {w}\nmore", '"', "  ", "The text in {w} sentiment is",
            "fine {w} day", "good movie {w}\" again", "nice {w} phone", "awful {w} service", "ok {w}",
            "great {w} film", "terrible {w} plot", "lovely {w} place", "boring {w} show", "meh {w}"]

    def __init__(self, fail_after: int | None = None):
        self.calls = 0
        self.fail_after = fail_after

    def sample(self, prompt: str, seeds: Sequence[int], *, max_new_tokens: int | None = None
               ) -> list[Continuation]:
        self.calls += 1
        if self.fail_after is not None and self.calls > self.fail_after:
            raise Killed(f"killed at sampler call {self.calls}")
        word = prompt.split(" in ")[1].split(" sentiment")[0]
        out = []
        for s in seeds:
            text = self.POOL[s % len(self.POOL)].format(w=word)
            if s % 7 == 0:
                text = f"{text} #{s % 97}"
            out.append(Continuation(text, len(text.split())))
        return out


class FakeScorer:
    """Scores: the ``verbalizer`` rule favours the label word found in the text (lower = better),
    the ``nll`` rule is the opposite (so ``auto`` must pick ``verbalizer``). Texts without a label
    word score equal under every label. Records the templates it was called with."""

    def __init__(self, labels: Sequence[str], fail_after: int | None = None, invert_nll: bool = True):
        self.labels = tuple(labels)
        self.templates: list[str | None] = []
        self.calls = 0
        self.fail_after = fail_after
        self.invert_nll = invert_nll

    def scores(self, texts, *, rule=None, template=None, progress=False):
        self.calls += 1
        if self.fail_after is not None and self.calls > self.fail_after:
            raise Killed(f"killed at scorer call {self.calls}")
        self.templates.append(template)
        out = np.zeros((len(texts), len(self.labels)))
        for i, t in enumerate(texts):
            for k, lab in enumerate(self.labels):
                if lab in t:
                    out[i, k] = -1.0 if (rule == "verbalizer" or not self.invert_nll) else 1.0
            if "#" in t:  # a weak signal for some rows: below the T_RE threshold
                out[i] *= 0.03
        return out


class PoolSampler(FakeSampler):
    """:class:`FakeSampler` whose texts ignore the prompt (so shards of every label share duplicates), with
    an optional pause per call (so shards on parallel workers overlap in time)."""

    def __init__(self, fail_after: int | None = None, pause: float = 0.0):
        super().__init__(fail_after)
        self.pause = pause

    def sample(self, prompt: str, seeds: Sequence[int], *, max_new_tokens: int | None = None
               ) -> list[Continuation]:
        import time

        time.sleep(self.pause)
        return super().sample('The text in any sentiment is: "', seeds)
