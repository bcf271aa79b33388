"""Guided sampling (``generate.guidance``): contrast a row's label prompt with the other labels' prompts.

Classifier-free guidance / contrastive decoding between label prompts. With ``g = generate.guidance > 0``
every token of a row whose prompt names label ``y`` is sampled from

    log p_g(x_t) = (1 + g) * log p(x_t | prompt(y), x_<t) - g * mean_j log p(x_t | prompt(j), x_<t)

over the other labels ``j`` (the same prompt set's prompt, domain and length class, only the label word
differs: :attr:`unigen.synth.generation.ShardSpec.contrast`), i.e. ``p(x|y)^(1+g) / p(x|other)^g``: tokens
that the label makes more likely gain, tokens every label's prompt predicts alike (the prompt's topic, the
form of a review) keep their odds. Then the usual temperature / top-k / top-p filtering
(:func:`~unigen.synth.sampling.filtered_distribution`) and inverse-CDF sampling with the row's own uniforms
(:func:`~unigen.synth.sampling.row_uniforms`), so a row's text still depends on its seed and the model only,
not on the batch size or the other rows (up to floating-point differences of batched matrix products). The
sampled token is appended to the row's main sequence and to each of its contrast sequences; a row stops at
the same stop tokens as :class:`~unigen.synth.sampling.LMSampler` (a token with a newline or a double
quote, or EOS) and leaves the batch with all its contrast rows.

:class:`GuidedSampler` is a PyTorch sampler with fixed batches of ``batch_size`` rows (no continuous
refill): the KV cache of every prompt is computed once and kept, and each decoding step runs the main rows
and the contrast rows of a batch in one forward pass (``labels x rows`` sequences; prompts of different
token lengths are left-padded and masked). So a step costs about one forward pass per label instead of
one. A cache layout other than ``DynamicCache``'s ``layers[i].keys/values`` falls back to one forward
pass per prompt (same rows). With ``g = 0`` no contrast is computed and the rows are
:class:`~unigen.synth.sampling.LMSampler`'s.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import torch

from unigen.synth.sampling import (
    Continuation,
    LMSampler,
    SamplingSettings,
    _kv_layers,
)


def guided_logits(main: torch.Tensor, contrast: torch.Tensor, guidance: float) -> torch.Tensor:
    """``(1 + g) * log_softmax(main) - g * mean_j log_softmax(contrast[j])``.

    Args:
        main: ``(B, V)`` next-token logits under each row's own prompt.
        contrast: ``(J, B, V)`` next-token logits of the same rows under the ``J`` other labels' prompts.
        guidance: ``g``; with ``g = 0`` (or ``J = 0``) ``main`` is returned unchanged.
    """
    if guidance == 0 or contrast.shape[0] == 0:
        return main
    own = torch.log_softmax(main.float(), dim=-1)
    other = torch.log_softmax(contrast.float(), dim=-1).mean(0)
    return (1.0 + guidance) * own - guidance * other


class _Rows:
    """The live rows of some prompts in one batch: ``b`` rows per prompt, stacked prompt by prompt, with
    one KV cache (each prompt's cache repeated ``b`` times, left-padded to the longest prompt)."""

    def __init__(self, states: Sequence[tuple[Any, torch.Tensor, int]], b: int, device: Any):
        self.n, self.b = len(states), b
        plens = [plen for _, _, plen in states]
        width = max(plens)
        self.cache = copy.deepcopy(states[0][0])
        if self.n == 1:
            self.cache.batch_repeat_interleave(b)
        else:
            sources = [_kv_layers(cache) for cache, _, _ in states]
            for i, layer in enumerate(_kv_layers(self.cache)):
                for name in ("keys", "values"):
                    parts = []
                    for src, plen in zip(sources, plens):
                        t = getattr(src[i], name)  # (1, heads, plen, dim)
                        pad = t.new_zeros(1, t.shape[1], width - plen, t.shape[3])
                        parts.append(torch.cat([pad, t], dim=2).expand(b, -1, -1, -1))
                    setattr(layer, name, torch.cat(parts))
        self.padded = min(plens) < width
        self.mask = torch.cat([
            torch.cat([torch.zeros(b, width - plen, dtype=torch.long, device=device),
                       torch.ones(b, plen, dtype=torch.long, device=device)], dim=1)
            for plen in plens
        ])
        self.position = torch.tensor(plens, dtype=torch.long, device=device).repeat_interleave(b)

    def keep(self, idx: torch.Tensor) -> None:
        """Keep the rows ``idx`` (indices among the ``b`` live rows) of every prompt."""
        offsets = torch.arange(self.n, device=idx.device)[:, None] * self.b
        full = (offsets + idx[None, :]).reshape(-1)
        self.cache.batch_select_indices(full)
        self.mask, self.position, self.b = self.mask[full], self.position[full], len(idx)

    def step(self, model: Any, tokens: torch.Tensor) -> torch.Tensor:
        """Append ``tokens`` (``(b,)``, the same for every prompt) and return the next-token logits
        ``(n, b, V)``."""
        self.mask = torch.cat([self.mask, torch.ones_like(self.mask[:, :1])], dim=1)
        out = model(input_ids=tokens.repeat(self.n)[:, None], past_key_values=self.cache, use_cache=True,
                    attention_mask=self.mask if self.padded else None, position_ids=self.position[:, None])
        self.cache = out.past_key_values
        self.position = self.position + 1
        return out.logits[:, -1].float().view(self.n, self.b, -1)


class GuidedSampler(LMSampler):
    """Sampling with guidance ``g`` against the other labels' prompts (module docstring).

    ``batch_size`` counts a batch's main rows; its forward passes run ``batch_size`` rows per label.
    ``stack=False`` runs one forward pass per prompt instead of one for all (the fallback for cache
    layouts that cannot be padded; tests compare the two).
    """

    def __init__(self, model: Any, tokenizer: Any, settings: SamplingSettings, guidance: float,
                 batch_size: int = 32, *, stack: bool = True):
        if not guidance >= 0:
            raise ValueError(f"guidance must be >= 0; got {guidance}")
        super().__init__(model, tokenizer, settings, batch_size=batch_size, refill=False)
        self.guidance = float(guidance)
        self.stack = stack

    def sample(self, prompt: str, seeds: Sequence[int], *, max_new_tokens: int | None = None,
               contrast: Sequence[str] = ()) -> list[Continuation]:
        """Continue ``prompt`` once per seed, guided away from the prompts ``contrast`` (the other labels'
        prompts; required with guidance > 0, ignored with 0), with at most ``max_new_tokens`` new tokens
        (default: the settings')."""
        if self.guidance > 0 and not contrast:
            raise ValueError("guided sampling needs the other labels' prompts (contrast)")
        prompts = [prompt, *contrast] if self.guidance > 0 else [prompt]
        steps = max_new_tokens or self.settings.max_new_tokens
        out: list[Continuation] = []
        for start in range(0, len(seeds), self.batch_size):
            out.extend(self._guided_batch(prompts, seeds[start: start + self.batch_size], steps))
        return out

    @torch.inference_mode()
    def _guided_batch(self, prompts: Sequence[str], seeds: Sequence[int], steps: int) -> list[Continuation]:
        states = [self._prefix_state(p) for p in prompts]
        b = len(seeds)
        stack = self.stack and all(_kv_layers(cache) is not None for cache, _, _ in states)
        groups = [_Rows(states, b, self.device)] if stack else [_Rows([s], b, self.device) for s in states]
        logits = torch.stack([lg[0] for _, lg, _ in states])[:, None].expand(-1, b, -1)  # (n, b, V)

        def keep_rows(idx: torch.Tensor) -> None:
            for group in groups:
                group.keep(idx)

        return self._decode_rows(
            logits, seeds, steps, scores=lambda lg: guided_logits(lg[0], lg[1:], self.guidance),
            keep_rows=keep_rows,
            next_logits=lambda nxt, _step: torch.cat([group.step(self.model, nxt) for group in groups]))
