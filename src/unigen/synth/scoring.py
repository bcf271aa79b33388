"""Causal-LM scoring of texts under each label: the Prompting baseline and the relabeling stage.

Both rules return a score matrix ``S`` of shape ``(N, K)`` where **lower means more likely**, so that
the prediction is ``argmin_k S[n, k]`` and relabel probabilities are ``softmax(-S / tau_RE)``.

* ``nll`` (the paper's rule, docs/method.md §3): ``S[n, k]`` is the mean token negative
  log-likelihood of ``template.format(label=label_k, text=x_n)`` over tokens 2..T (padding masked
  unless ``include_padding``, the paper code's quirk).
* ``verbalizer``: ``S[n, k] = -log p(first token of " " + label_k | verbalizer_template(x_n))``, one
  forward pass per text; with ``calibrate`` the same scores of a content-free input are subtracted
  (contextual calibration), ``S[n, k] -= S_cf[k]``.

Verbalizer variants (``scoring.verbalizer_extra_templates``, ``scoring.verbalizer_extra_label_words``): with
prompts ``t = 1..P`` (``verbalizer_template`` first) and label-word sets ``w = 1..W`` (the labels first), the
score is the mean of the calibrated scores of every pair::

    S[n, k] = 1/(P W) * sum_t sum_w ( -log p(first token of " " + w_k | t(x_n)) + log p(... | t(cf)) )

One forward pass per prompt and text serves every word set (each prompt's next-token distribution is read at
all sets' first tokens); each set's first tokens must differ (the one-line error otherwise). Without variants
the score is exactly the single-prompt score above.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from unigen.config import ScoringConfig
from unigen.console import progress_bar
from unigen.registry import load_causal_lm, pick_device


def scoring_progress(total: int, desc: str, enabled: bool) -> Any:
    return progress_bar(total, desc, enabled, unit="text", leave=False, smoothing=0.3)


class LMScorer:
    """Scores texts under label words with a causal LM (batched, length-bucketed, padding masked)."""

    def __init__(
        self, model: Any, tokenizer: Any, labels: Sequence[str], config: ScoringConfig | None = None
    ):
        self.model = model
        self.tokenizer = tokenizer
        self.labels = tuple(labels)
        self.config = config or ScoringConfig()
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        self.device = next(model.parameters()).device
        self._label_token_ids: list[int] | None = None
        self._content_free: np.ndarray | None = None

    @classmethod
    def from_name(cls, name: str, labels: Sequence[str], config: ScoringConfig | None = None,
                  device: str = "auto") -> LMScorer:
        model, tokenizer = load_causal_lm(name, device=pick_device(device))
        return cls(model, tokenizer, labels, config)

    # ------------------------------------------------------------ public
    def scores(self, texts: Sequence[str], *, rule: str | None = None, template: str | None = None,
               progress: bool = False) -> np.ndarray:
        """Score matrix ``(N, K)``, lower = more likely (see module docstring)."""
        rule = rule or self.config.rule
        texts = [self.truncate(t) for t in texts]
        if rule == "nll":
            return self._nll_scores(texts, template or self.config.template, progress)
        if rule == "verbalizer":
            if self.config.has_verbalizer_variants():
                return self._mean_variant_scores(texts, progress)
            out = self._verbalizer_scores(texts, progress)
            if self.config.calibrate:
                out = out - self.content_free_scores()
            return out
        raise ValueError(f"unknown scoring rule {rule!r}: use nll or verbalizer")

    def predict(self, texts: Sequence[str], **kwargs: Any) -> np.ndarray:
        return self.scores(texts, **kwargs).argmin(axis=1)

    def truncate(self, text: str) -> str:
        """Cut a text to ``max_text_tokens`` of this LM's tokens."""
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        limit = self.config.max_text_tokens
        return text if len(ids) <= limit else self.tokenizer.decode(ids[:limit])

    def content_free_scores(self) -> np.ndarray:
        if self._content_free is None:
            self._content_free = self._verbalizer_scores([self.config.content_free_text], False)[0]
        return self._content_free

    # ------------------------------------------------------------ helpers
    def _encode(self, strings: Sequence[str]) -> list[list[int]]:
        ids = self.tokenizer(list(strings))["input_ids"]
        limit = self.config.max_total_tokens
        return [seq[:limit] if limit else seq for seq in ids]

    def _pad(self, seqs: Sequence[Sequence[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        width = max(len(s) for s in seqs)
        pad = self.tokenizer.pad_token_id
        ids = torch.full((len(seqs), width), pad, dtype=torch.long)
        mask = torch.zeros((len(seqs), width), dtype=torch.long)
        for i, s in enumerate(seqs):
            ids[i, : len(s)] = torch.tensor(s, dtype=torch.long)
            mask[i, : len(s)] = 1
        return ids.to(self.device), mask.to(self.device)

    def _batches(self, seqs: list[list[int]]) -> list[list[int]]:
        """Indices grouped into batches of similar length (less padding)."""
        order = sorted(range(len(seqs)), key=lambda i: len(seqs[i]))
        size = self.config.batch_size
        return [order[i: i + size] for i in range(0, len(order), size)]

    @torch.inference_mode()
    def sequence_nll(self, seqs: list[list[int]]) -> np.ndarray:
        """Mean NLL per token sequence over positions 2..T (padding masked unless include_padding)."""
        out = np.zeros(len(seqs), dtype=np.float64)
        for batch in self._batches(seqs):
            ids, mask = self._pad([seqs[i] for i in batch])
            logits = self.model(input_ids=ids, attention_mask=mask).logits[:, :-1].float()
            targets = ids[:, 1:]
            nll = F.cross_entropy(logits.transpose(1, 2), targets, reduction="none")
            weight = torch.ones_like(nll) if self.config.include_padding else mask[:, 1:].to(nll.dtype)
            mean = (nll * weight).sum(1) / weight.sum(1).clamp_min(1)
            out[batch] = mean.cpu().numpy()
        return out

    def _nll_scores(self, texts: list[str], template: str, progress: bool) -> np.ndarray:
        n, k = len(texts), len(self.labels)
        strings = [template.format(label=lab, text=t) for t in texts for lab in self.labels]
        seqs = self._encode(strings)
        result = np.zeros(n * k)
        step = self.config.batch_size * 8
        with scoring_progress(n, "scoring (nll)", progress) as bar:
            for start in range(0, len(seqs), step):
                result[start: start + step] = self.sequence_nll(seqs[start: start + step])
                bar.update(len(seqs[start: start + step]) // k)
        return result.reshape(n, k)

    def label_token_ids(self) -> list[int]:
        if self._label_token_ids is None:
            self._label_token_ids = self.first_token_ids(self.labels)
        return self._label_token_ids

    def first_token_ids(self, words: Sequence[str]) -> list[int]:
        """The first token of ``" " + word`` for each word; words sharing one cannot be told apart."""
        ids = [self.tokenizer(" " + word, add_special_tokens=False)["input_ids"][0] for word in words]
        if len(set(ids)) != len(ids):
            raise ValueError(f"label words {tuple(words)} share their first token; pick other label words")
        return ids

    def _mean_variant_scores(self, texts: list[str], progress: bool) -> np.ndarray:
        """Calibrated verbalizer scores averaged over every prompt and label-word set (module docstring)."""
        word_sets = self.config.verbalizer_word_sets(self.labels)
        set_ids = [self.first_token_ids(words) for words in word_sets]
        k = len(self.labels)
        total = np.zeros((len(texts), k))
        for template in self.config.verbalizer_templates():
            view = self._prompt_view(template, [w for words in word_sets for w in words],
                                     [i for ids in set_ids for i in ids])
            raw = view._verbalizer_scores(texts, progress)  # (N, W * K): every set's words side by side
            if self.config.calibrate:
                raw = raw - view.content_free_scores()
            total += raw.reshape(len(texts), len(word_sets), k).sum(axis=1)
        return total / (len(self.config.verbalizer_templates()) * len(word_sets))

    def _prompt_view(self, template: str, words: list[str], token_ids: list[int]) -> LMScorer:
        """This scorer (same model, any backend) with one verbalizer prompt and the given words as labels;
        kept per prompt so its content-free scores are computed once."""
        views = self.__dict__.setdefault("_prompt_views", {})
        if template not in views:
            view = copy.copy(self)
            del view.__dict__["_prompt_views"]
            view.config = dataclasses.replace(self.config, verbalizer_template=template,
                                              verbalizer_extra_templates=(), verbalizer_extra_label_words=())
            view.labels, view._label_token_ids, view._content_free = tuple(words), token_ids, None
            views[template] = view
        return views[template]

    @torch.inference_mode()
    def _verbalizer_scores(self, texts: list[str], progress: bool) -> np.ndarray:
        seqs = self._encode([self.config.verbalizer_template.format(text=t) for t in texts])
        label_ids = torch.tensor(self.label_token_ids(), device=self.device)
        out = np.zeros((len(texts), len(self.labels)))
        with scoring_progress(len(texts), "scoring (verbalizer)", progress) as bar:
            for batch in self._batches(seqs):
                ids, mask = self._pad([seqs[i] for i in batch])
                logp = torch.log_softmax(self._last_logits(ids, mask), dim=-1)
                out[batch] = (-logp[:, label_ids]).cpu().numpy()
                bar.update(len(batch))
        return out

    def _last_logits(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Next-token logits (float32) after each right-padded sequence's last real token."""
        logits = self.model(input_ids=ids, attention_mask=mask).logits
        return logits[torch.arange(len(ids)), mask.sum(1) - 1].float()


# ---------------------------------------------------------------- the relabel stage's faster scorer
# A faster :class:`unigen.synth.scoring.LMScorer` for the relabel stage (same scores, less work).
#
# * Verbalizer rule: only the next-token distribution at the last real position is needed, so instead
#   of the full ``(B, T, V)`` logits this scorer runs the base transformer, gathers each row's last
#   hidden state and applies the output head to those ``B`` vectors (``V`` = 49k for SmolLM2, so the
#   head is a large share of the work).
# * Nll rule: the ``N * K`` filled templates are length-bucketed all together (the base class sorts
#   within chunks of ``8 * batch_size``), so batches carry less padding.
#
# Scores equal :class:`LMScorer`'s up to float rounding (checked in the tests and the benchmark).
class FastLMScorer(LMScorer):
    """:class:`LMScorer` with a last-position-only output head for the verbalizer rule."""

    def _last_logits(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        base = self.model.base_model
        hidden = base(input_ids=ids, attention_mask=mask).last_hidden_state
        last = mask.sum(1) - 1
        h = hidden[torch.arange(len(ids), device=ids.device), last]
        logits = self.model.get_output_embeddings()(h).float()
        cap = getattr(self.model.config, "final_logit_softcapping", None)
        return torch.tanh(logits / cap) * cap if cap else logits

    def _nll_scores(self, texts: list[str], template: str, progress: bool) -> np.ndarray:
        n, k = len(texts), len(self.labels)
        seqs = self._encode([template.format(label=lab, text=t) for t in texts for lab in self.labels])
        out = np.zeros(n * k)
        with scoring_progress(n, "scoring (nll)", progress) as bar:
            for batch in self._batches(seqs):
                out[batch] = self.sequence_nll([seqs[i] for i in batch])
                bar.update(len(batch) / k)
        return out.reshape(n, k)
