"""Sampling continuations of one prompt from a causal LM, fast and reproducible per row.

:class:`LMSampler` is the generation stage's engine. For a batch of ``B`` rows of the same prompt it

1. runs the prompt once at batch size 1 and keeps its KV cache (per prompt, for the whole run),
2. decodes token by token with top-k / top-p / temperature sampling,
3. drops a row from the batch (and from the KV cache) as soon as it emits a *stop token*: a token
   whose text contains a newline or a double quote, or end-of-sequence. Post-processing cuts the
   text there anyway (docs/method.md §2), so the rest would be thrown away, and
4. refills the freed slots at once with new rows (continuous batching): a new row gets a copy of the
   prompt's cache, left-padded to the batch's cache length and masked, its own position ids, and its
   first token from the prompt's cached next-token logits. So every decoding step runs ``B`` rows
   until the seeds run out, instead of a shrinking batch that waits for its longest row.
   (``refill=False``, or a cache layout other than ``DynamicCache``'s ``layers[i].keys/values``,
   falls back to fixed batches that only shrink.)

Sampling uses one uniform number per (row, step) drawn from the row's own seed, and inverse-CDF
sampling from the filtered distribution, so a row's text depends on its seed and the model only:
not on the batch size, on its position in the batch or on the other rows (up to floating-point
differences of batched matrix products).

Filtering order and semantics follow Hugging Face's ``generate``: logits / temperature, keep the
``top_k`` largest (0 = all), then keep the smallest set of most likely tokens whose probability mass
reaches ``top_p`` (the most likely token always stays), renormalise.

:func:`naive_generate` is the plain Hugging Face ``generate`` loop the benchmark compares with.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import torch

from unigen.config import GenerateConfig


@dataclass(frozen=True)
class Continuation:
    """What a sampler returns for one row: the decoded new text (prompt excluded)."""

    text: str
    n_tokens: int
    ids: tuple[int, ...] = ()  # the sampled token ids (empty for fake samplers)


class TextSampler(Protocol):
    """Anything that continues a prompt once per seed (the real LM or a fake one in tests).

    ``max_new_tokens`` (a length class's budget, :mod:`unigen.synth.generation`) replaces the settings'
    budget for one call; the generation stage passes it only with ``generate.lengths`` set, so a sampler
    without the keyword serves the paper's single-budget runs. Likewise ``contrast=`` (the other labels'
    prompts), passed only with ``generate.guidance > 0`` and taken by
    :class:`unigen.synth.guidance.GuidedSampler` alone.
    """

    def sample(self, prompt: str, seeds: Sequence[int], *,
               max_new_tokens: int | None = None) -> list[Continuation]:  # pragma: no cover
        ...


_GENERATE = GenerateConfig()


@dataclass(frozen=True)
class SamplingSettings:
    """The sampling knobs of ``generate.*`` that a sampler needs (:meth:`from_config`); the defaults are
    :class:`~unigen.config.GenerateConfig`'s, not repeated here."""

    top_k: int = _GENERATE.top_k
    top_p: float = _GENERATE.top_p
    temperature: float = _GENERATE.temperature
    max_new_tokens: int = _GENERATE.max_new_tokens

    @classmethod
    def from_config(cls, config: GenerateConfig) -> SamplingSettings:
        return cls(top_k=config.top_k, top_p=config.top_p, temperature=config.temperature,
                   max_new_tokens=config.max_new_tokens)


def filtered_distribution(
    logits: torch.Tensor, settings: SamplingSettings
) -> tuple[torch.Tensor, torch.Tensor]:
    """Candidate token ids ``(B, C)`` sorted by probability and their renormalised probabilities.

    Args:
        logits: ``(B, V)`` next-token logits.
        settings: temperature, top-k (0 = no limit) and top-p.

    Returns:
        ``(ids, probs)``; ``probs`` rows sum to one, removed candidates have probability 0.
    """
    logits = logits.float() / settings.temperature
    k = settings.top_k if 0 < settings.top_k < logits.shape[-1] else logits.shape[-1]
    values, ids = torch.topk(logits, k, dim=-1, sorted=True)
    probs = torch.softmax(values, dim=-1)
    if settings.top_p < 1.0:
        mass_before = probs.cumsum(-1) - probs
        probs = probs.masked_fill(mass_before >= settings.top_p, 0.0)
        probs = probs / probs.sum(-1, keepdim=True)
    return ids, probs


def sample_tokens(ids: torch.Tensor, probs: torch.Tensor, uniforms: torch.Tensor) -> torch.Tensor:
    """Inverse-CDF sampling: the first candidate whose cumulative probability exceeds ``u``."""
    cdf = probs.cumsum(-1)
    u = uniforms.unsqueeze(-1) * cdf[:, -1:]
    choice = (cdf <= u).sum(-1).clamp_max(probs.shape[-1] - 1)
    # a removed candidate (probability 0) can only be hit through rounding: step back to a kept one
    while True:
        bad = probs.gather(1, choice[:, None])[:, 0] <= 0
        if not bool(bad.any()):
            break
        choice = torch.where(bad, choice - 1, choice).clamp_min(0)
    return ids.gather(1, choice[:, None])[:, 0]


def row_uniforms(seeds: Sequence[int], steps: int) -> torch.Tensor:
    """``(B, steps)`` uniforms in [0, 1); row ``i`` comes from its own generator seeded with ``seeds[i]``."""
    return torch.stack(
        [
            torch.rand(steps, generator=torch.Generator().manual_seed(int(s)), dtype=torch.float64)
            for s in seeds
        ]
    ).float()


def stop_token_mask(tokenizer: Any, vocab_size: int, eos_ids: Sequence[int]) -> torch.Tensor:
    """Bool ``(V,)``: tokens whose text contains a newline or a double quote, and the EOS tokens."""
    n = min(vocab_size, len(tokenizer))
    texts = tokenizer.batch_decode([[i] for i in range(n)])
    mask = torch.zeros(vocab_size, dtype=torch.bool)
    mask[: n] = torch.tensor(['"' in t or "\n" in t for t in texts])
    for e in eos_ids:
        if 0 <= e < vocab_size:
            mask[e] = True
    return mask


def eos_token_ids(model: Any, tokenizer: Any) -> list[int]:
    ids: set[int] = set()
    for src in (getattr(model, "generation_config", None), tokenizer):
        value = getattr(src, "eos_token_id", None)
        if isinstance(value, int):
            ids.add(value)
        elif isinstance(value, (list, tuple)):
            ids.update(int(v) for v in value)
    return sorted(ids)


class LMSampler:
    """Reproducible per-row sampling with a shared prompt KV cache and early stopping (module doc)."""

    def __init__(self, model: Any, tokenizer: Any, settings: SamplingSettings, batch_size: int = 32,
                 refill: bool = True):
        self.model = model
        self.refill = refill
        self.tokenizer = tokenizer
        self.settings = settings
        self.batch_size = batch_size
        self.device = next(model.parameters()).device
        self.eos_ids = eos_token_ids(model, tokenizer)
        vocab = model.get_output_embeddings().weight.shape[0]
        self.stop_mask = stop_token_mask(tokenizer, vocab, self.eos_ids).to(self.device)
        self._prefix: dict[str, tuple[Any, torch.Tensor, int]] = {}
        self.tokens_generated = 0

    def sample(self, prompt: str, seeds: Sequence[int], *,
               max_new_tokens: int | None = None) -> list[Continuation]:
        """Continue ``prompt`` once per seed, with at most ``max_new_tokens`` new tokens (default: the
        settings')."""
        steps = max_new_tokens or self.settings.max_new_tokens
        if self.refill and _kv_layers(self._prefix_state(prompt)[0]) is not None:
            return self._sample_stream(prompt, seeds, steps)
        out: list[Continuation] = []
        for start in range(0, len(seeds), self.batch_size):
            out.extend(self._sample_batch(prompt, seeds[start: start + self.batch_size], steps))
        return out

    @torch.inference_mode()
    def _prefix_state(self, prompt: str) -> tuple[Any, torch.Tensor, int]:
        if prompt not in self._prefix:
            ids = self.tokenizer(prompt, return_tensors="pt")["input_ids"].to(self.device)
            out = self.model(input_ids=ids, use_cache=True)
            self._prefix[prompt] = (out.past_key_values, out.logits[:, -1].float(), ids.shape[1])
        return self._prefix[prompt]

    @torch.inference_mode()
    def _sample_batch(self, prompt: str, seeds: Sequence[int], steps: int) -> list[Continuation]:
        cache0, logits0, plen = self._prefix_state(prompt)
        cache = copy.deepcopy(cache0)
        cache.batch_repeat_interleave(len(seeds))

        def next_logits(nxt: torch.Tensor, step: int) -> torch.Tensor:
            position = torch.full((len(nxt), 1), plen + step, dtype=torch.long, device=self.device)
            out = self.model(input_ids=nxt[:, None], past_key_values=cache, use_cache=True,
                             position_ids=position)
            return out.logits[:, -1]

        return self._decode_rows(logits0.expand(len(seeds), -1), seeds, steps, scores=lambda logits: logits,
                                 keep_rows=cache.batch_select_indices, next_logits=next_logits)

    def _decode_rows(self, logits: Any, seeds: Sequence[int], steps: int, *,
                     scores: Callable[[Any], torch.Tensor], keep_rows: Callable[[torch.Tensor], None],
                     next_logits: Callable[[torch.Tensor, int], Any]) -> list[Continuation]:
        """The decoding loop of a batch of rows that share a prompt state.

        At each step every live row draws its token from ``filtered_distribution(scores(logits))`` with its
        own seeded uniform (:func:`row_uniforms`); rows that draw a stop token end, ``keep_rows(idx)`` drops
        them from the model state, and ``next_logits(tokens, step)`` feeds the others' tokens forward.
        """
        uniforms = row_uniforms(seeds, steps).to(self.device)
        tokens = torch.full((len(seeds), steps), -1, dtype=torch.long)
        active = torch.arange(len(seeds), device=self.device)  # original row of each live batch entry
        for step in range(steps):
            ids, probs = filtered_distribution(scores(logits), self.settings)
            nxt = sample_tokens(ids, probs, uniforms[active, step])
            tokens[active.cpu(), step] = nxt.cpu()
            self.tokens_generated += len(active)
            keep = ~self.stop_mask[nxt]
            if step == steps - 1 or not bool(keep.any()):
                break
            if not bool(keep.all()):
                idx = keep.nonzero()[:, 0]
                keep_rows(idx)
                active, nxt = active[idx], nxt[idx]
            logits = next_logits(nxt, step)
        return [self._decode(row) for row in tokens.tolist()]

    @torch.inference_mode()
    def _sample_stream(self, prompt: str, seeds: Sequence[int], steps: int) -> list[Continuation]:
        """Continuous batching over all ``seeds`` (module docstring, step 4)."""
        cache0, logits0, plen = self._prefix_state(prompt)
        dev = self.device
        uniforms = row_uniforms(seeds, steps).to(dev)
        tokens = torch.full((len(seeds), steps), -1, dtype=torch.long)
        first_ids, first_probs = filtered_distribution(logits0, self.settings)
        st = _StreamState(dev)
        pending = 0
        while True:
            while len(st.rows) < self.batch_size and pending < len(seeds):  # refill free slots
                new = torch.arange(
                    pending, min(len(seeds), pending + self.batch_size - len(st.rows)), device=dev
                )
                pending += len(new)
                k = len(new)
                tok = sample_tokens(first_ids.expand(k, -1), first_probs.expand(k, -1), uniforms[new, 0])
                tokens[new.cpu(), 0] = tok.cpu()
                self.tokens_generated += k
                alive = ~self.stop_mask[tok] if steps > 1 else torch.zeros_like(tok, dtype=torch.bool)
                st.admit(new[alive], tok[alive], cache0, plen)
            if not len(st.rows):
                break
            attn = torch.cat([st.mask, torch.ones_like(st.mask[:, :1])], dim=1)
            out = self.model(input_ids=st.token[:, None], past_key_values=st.cache, attention_mask=attn,
                             position_ids=(plen + st.step - 1)[:, None], use_cache=True)
            st.cache, st.mask = out.past_key_values, attn
            ids, probs = filtered_distribution(out.logits[:, -1], self.settings)
            tok = sample_tokens(ids, probs, uniforms[st.rows, st.step])
            tokens[st.rows.cpu(), st.step.cpu()] = tok.cpu()
            self.tokens_generated += len(tok)
            st.token, st.step = tok, st.step + 1
            st.keep(~self.stop_mask[tok] & (st.step < steps))
        return [self._decode(row) for row in tokens.tolist()]

    def _decode(self, row: list[int]) -> Continuation:
        ids = [t for t in row if t >= 0]
        return Continuation(self.tokenizer.decode(ids, skip_special_tokens=True), len(ids), tuple(ids))


def _kv_layers(cache: Any) -> list[Any] | None:
    """The per-layer key/value holders of a ``DynamicCache`` (``None`` for other layouts)."""
    layers = getattr(cache, "layers", None)
    if not layers or not all(
        hasattr(la, "keys") and hasattr(la, "values") and not getattr(la, "is_sliding", False)
        for la in layers
    ):
        return None
    return list(layers)


class _StreamState:
    """The live rows of continuous batching: cache, padding mask, positions, last tokens."""

    def __init__(self, device: Any):
        self.device = device
        self.rows = torch.empty(0, dtype=torch.long, device=device)  # index into the seeds
        self.step = torch.empty(0, dtype=torch.long, device=device)  # tokens sampled so far
        self.token = torch.empty(0, dtype=torch.long, device=device)  # last sampled token
        self.mask: torch.Tensor = torch.empty(0, 0, dtype=torch.long, device=device)
        self.cache: Any = None

    def admit(self, rows: torch.Tensor, token: torch.Tensor, cache0: Any, plen: int) -> None:
        """Add rows whose first token is sampled; their cache is the prompt's, left-padded."""
        k = len(rows)
        if not k:
            return
        if self.cache is None or not len(self.rows):
            self.cache = copy.deepcopy(cache0)
            self.cache.batch_repeat_interleave(k)
            self.mask = torch.ones(k, plen, dtype=torch.long, device=self.device)
        else:
            width = self.mask.shape[1]
            for layer, layer0 in zip(_kv_layers(self.cache), _kv_layers(cache0)):
                for name in ("keys", "values"):
                    old, new = getattr(layer, name), getattr(layer0, name)
                    pad = new.new_zeros(k, new.shape[1], width - plen, new.shape[3])
                    setattr(layer, name, torch.cat([old, torch.cat([pad, new.expand(k, -1, -1, -1)], dim=2)]))
            new_mask = torch.cat([torch.zeros(k, width - plen, dtype=torch.long, device=self.device),
                                  torch.ones(k, plen, dtype=torch.long, device=self.device)], dim=1)
            self.mask = torch.cat([self.mask, new_mask])
        self.rows = torch.cat([self.rows, rows])
        self.step = torch.cat([self.step, torch.ones_like(rows)])
        self.token = torch.cat([self.token, token])

    def keep(self, alive: torch.Tensor) -> None:
        """Drop finished rows, then the cache columns that are padding for every remaining row."""
        if not bool(alive.all()):
            idx = alive.nonzero()[:, 0]
            self.cache.batch_select_indices(idx)
            self.rows, self.step, self.token, self.mask = (
                self.rows[idx],
                self.step[idx],
                self.token[idx],
                self.mask[idx],
            )
        if len(self.rows):
            first = int(self.mask.any(0).nonzero()[0, 0])
            if first:
                self.mask = self.mask[:, first:]
                for layer in _kv_layers(self.cache):
                    layer.keys, layer.values = layer.keys[:, :, first:], layer.values[:, :, first:]


@torch.inference_mode()
def naive_generate(model: Any, tokenizer: Any, prompt: str, n: int, settings: SamplingSettings,
                   batch_size: int = 32) -> list[Continuation]:
    """The plain Hugging Face loop: ``generate`` on ``batch_size`` copies of the prompt, ``n`` rows in all."""
    device = next(model.parameters()).device
    ids = tokenizer(prompt, return_tensors="pt")["input_ids"].to(device)
    out: list[Continuation] = []
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    while len(out) < n:
        b = min(batch_size, n - len(out))
        gen = model.generate(input_ids=ids.expand(b, -1), attention_mask=torch.ones_like(ids).expand(b, -1),
                             do_sample=True, top_k=settings.top_k, top_p=settings.top_p,
                             temperature=settings.temperature, max_new_tokens=settings.max_new_tokens,
                             pad_token_id=pad)
        for row in gen[:, ids.shape[1]:].tolist():
            out.append(Continuation(tokenizer.decode(row, skip_special_tokens=True), len(row)))
    return out
