"""Generation stage, pure core: post-processing, the shard plan, and generating one shard in memory.

Plan. The target ``samples_per_label`` of each label is split evenly over the prompts of the set
(one prompt for ``universal``, five for ``combined``); each (label, prompt) pair is a *stream*, cut
into shards of ``shard_size`` rows (the last one shorter). Shards are numbered round-robin over the
streams (round 0 holds the first shard of every stream, and so on), so any prefix of the shard list
is balanced over labels and prompts. With length classes (``generate.lengths``,
:func:`unigen.prompts.length_variants`) each label's target is first split over the classes by their
shares (largest remainders, :func:`split_by_shares`), then evenly over the prompts, and a stream is a
(label, length class, prompt) triple whose prompt is reworded for the class and whose rows are sampled
with the class's new-token budget; every row then records its ``length``.

Seeds. Shard ``i`` has seed ``derive_seed(run_seed, "generate", i)`` and its ``a``-th attempt the
row seed ``derive_seed(shard_seed, a)``; the sampler draws row ``a``'s tokens from that seed alone.
A shard keeps its first ``size`` accepted attempts in attempt order, so its rows depend only on the
run seed, the shard index, the settings and the texts of the shards before it (de-duplication).

Post-processing (docs/method.md §2, the paper's code): the continuation after the prompt's opening quote is
cut at its first newline and then at its first double quote, and stripped. Rejected: empty texts,
prompt echoes (the text contains a prompt stem such as ``The text in positive sentiment is``; the
paper drops only the exact echo), and with ``dedup`` exact duplicates of any earlier row of the run.
Unterminated texts (no closing quote within ``max_new_tokens``) are kept, as in the paper.

The stop rule is the same for every length class: a newline ends a long review as it ends a sentence.
Real test texts hold no newline at all (0 of the 40k rows of the seven test sets; IMDB's paragraph breaks
are ``<br />`` tags), and SmolLM2-135M rarely writes one inside a quoted review (2 of 200 short and long
reviews at 160 tokens with newlines allowed), after which it drifted off the review (a new prompt line,
unrelated text). The token budget is the length lever; the closing quote still ends most texts.

The stage runner (disk, manifest, resume) is :mod:`unigen.synth.generate_stage`.
"""

from __future__ import annotations

import hashlib
import math
import re
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from unigen.errors import GenerationError
from unigen.prompts import LengthVariant, Prompt, length_variants
from unigen.seeds import derive_seed

if TYPE_CHECKING:  # sampling imports torch; keep this module light for the CLI
    from unigen.synth.sampling import TextSampler

STOP_REASONS = ("quote", "newline", "none")
MAX_ATTEMPTS_FACTOR = 20  # a shard gives up after 20 x size + 64 attempts (acceptance too low)


# ---------------------------------------------------------------- post-processing

def postprocess(raw: str) -> tuple[str, str]:
    """Cut a raw continuation as the paper code does.

    Args:
        raw: decoded new tokens (the text after the prompt's opening ``"``).

    Returns:
        ``(text, stop)``: the text before the first newline and then before the first ``"``,
        whitespace-stripped; ``stop`` says which cut ended it: ``quote``, ``newline`` or ``none``
        (unterminated, kept).
    """
    text, stop = raw, "none"
    if "\n" in text:
        text, stop = text.split("\n", 1)[0], "newline"
    if '"' in text:
        text, stop = text.split('"', 1)[0], "quote"
    return text.strip(), stop


_NON_WORD = re.compile(r"[^\w]+")


def normalise(text: str) -> str:
    """Lower-case words separated by single spaces (for echo detection)."""
    return " ".join(_NON_WORD.sub(" ", text.lower()).split())


def is_prompt_echo(text: str, stems: Sequence[str]) -> bool:
    """True if the normalised text contains a normalised prompt stem (any label of the set)."""
    norm = f" {normalise(text)} "
    return any(f" {normalise(s)} " in norm for s in stems)


def text_key(text: str) -> int:
    """64-bit digest of a text, the de-duplication key."""
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "big")


class KeySet:
    """A set of 64-bit keys in about 8 bytes per key (a Python ``set`` of ints takes ~70).

    New keys go to a small Python set that is merged into a sorted ``uint64`` array every
    ``buffer`` additions; membership checks both. Used for de-duplication and duplicate counts, so
    memory stays at ~8 MB per million rows.
    """

    def __init__(self, keys: Iterable[int] = (), buffer: int = 1 << 16):
        self._sorted = np.empty(0, dtype=np.uint64)
        self._recent: set[int] = set()
        self._buffer = buffer
        for k in keys:
            self.add(k)

    def __contains__(self, key: int) -> bool:
        if key in self._recent:
            return True
        i = int(np.searchsorted(self._sorted, np.uint64(key)))
        return i < len(self._sorted) and int(self._sorted[i]) == key

    def add(self, key: int) -> None:
        if key in self:
            return
        self._recent.add(key)
        if len(self._recent) >= self._buffer:
            fresh = np.fromiter(self._recent, dtype=np.uint64, count=len(self._recent))
            self._sorted = np.union1d(self._sorted, fresh)
            self._recent.clear()

    def __len__(self) -> int:
        return len(self._sorted) + len(self._recent)


# ---------------------------------------------------------------- plan

@dataclass(frozen=True)
class Stream:
    """A (label, prompt) pair and how many accepted rows it must contribute; with a length class the prompt
    is reworded for it and ``max_new_tokens`` is its budget (``None``: the sampler's
    ``generate.max_new_tokens``)."""

    label: int
    prompt: Prompt
    quota: int
    max_new_tokens: int | None = None


@dataclass(frozen=True)
class ShardSpec:
    """One shard to generate: its stream, label, prompt text, size and seed (``length`` and
    ``max_new_tokens``: its length class and budget, ``""`` / ``None`` without length classes;
    ``contrast``: the same prompt for each other label, in label order, which ``generate.guidance``
    contrasts with)."""

    index: int
    stream: int
    label: int
    domain: str
    prompt: str
    size: int
    seed: int
    length: str = ""
    max_new_tokens: int | None = None
    contrast: tuple[str, ...] = ()


def split_by_shares(total: int, shares: Sequence[float]) -> list[int]:
    """``total`` split in proportion to ``shares`` with whole numbers that sum to ``total`` (largest
    remainders; ties go to the earlier share)."""
    exact = [total * s / sum(shares) for s in shares]
    out = [math.floor(e) for e in exact]
    order = sorted(range(len(shares)), key=lambda i: (-(exact[i] - out[i]), i))
    for i in order[: total - sum(out)]:
        out[i] += 1
    return out


def plan_streams(n_labels: int, prompts: Sequence[Prompt], samples_per_label: int,
                 lengths: Sequence[LengthVariant] = ()) -> list[Stream]:
    """Split each label's target evenly over the prompts (the first prompts take the remainder); with
    ``lengths``, first over the length classes by their shares (module docstring). Empty streams are
    left out."""
    if not lengths:
        base, extra = divmod(samples_per_label, len(prompts))
        return [Stream(label, p, base + (1 if j < extra else 0))
                for label in range(n_labels) for j, p in enumerate(prompts) if base + (j < extra) > 0]
    quotas = split_by_shares(samples_per_label, [v.share for v in lengths])
    streams = []
    for label in range(n_labels):
        for variant, quota in zip(lengths, quotas):
            base, extra = divmod(quota, len(prompts))
            prompt_quotas = [base + (1 if j < extra else 0) for j in range(len(prompts))]
            streams += [Stream(label, p.with_length(variant.length), n, variant.max_new_tokens)
                        for p, n in zip(prompts, prompt_quotas) if n > 0]
    return streams


def generation_lengths(generate: Mapping[str, Any]) -> tuple[LengthVariant, ...]:
    """The length classes of a generation stage from its settings (its manifest's ``generate`` section,
    where settings at their default are absent)."""
    return length_variants(generate.get("lengths", ()), generate.get("length_shares", ()),
                           generate.get("length_tokens", ()))


def shard_spec(index: int, stream_id: int, stream: Stream, labels: Sequence[str], size: int,
               run_seed: int) -> ShardSpec:
    return ShardSpec(
        index,
        stream_id,
        stream.label,
        stream.prompt.domain,
        stream.prompt.render(labels[stream.label]),
        size,
        derive_seed(run_seed, "generate", index),
        stream.prompt.length,
        stream.max_new_tokens,
        tuple(stream.prompt.render(lab) for k, lab in enumerate(labels) if k != stream.label),
    )


def plan_shards(
    streams: Sequence[Stream], labels: Sequence[str], shard_size: int, run_seed: int
) -> list[ShardSpec]:
    """Every shard of a fixed-size run, numbered round-robin over the streams."""
    per_stream = [math.ceil(s.quota / shard_size) for s in streams]
    specs: list[ShardSpec] = []
    for rnd in range(max(per_stream, default=0)):
        for sid, stream in enumerate(streams):
            if rnd < per_stream[sid]:
                size = min(shard_size, stream.quota - rnd * shard_size)
                specs.append(shard_spec(len(specs), sid, stream, labels, size, run_seed))
    return specs


# ---------------------------------------------------------------- one shard

def _reject_reason(text: str, stems: Sequence[str], seen: KeySet | set[int] | None,
                   min_words: int = 0) -> str | None:
    if not text:
        return "empty"
    if len(text.split()) < min_words:
        return "short"
    if is_prompt_echo(text, stems):
        return "echo"
    if seen is not None and text_key(text) in seen:
        return "duplicate"
    return None


def generate_shard(sampler: TextSampler, spec: ShardSpec, *, prompt_set: str, stems: Sequence[str],
                   seen: KeySet | set[int] | None, on_batch: Callable[[int, int], None] | None = None,
                   chunk: int = 64, min_words: int = 0,
                   guided: bool = False) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Sample until ``spec.size`` rows are accepted; returns ``(rows, stats)``.

    Args:
        sampler: continues ``spec.prompt`` once per row seed.
        spec: the shard (index, stream, prompt, target size, seed; with a length class its name, stored in
            every row as ``length``, and its new-token budget, passed to the sampler as ``max_new_tokens``).
        prompt_set: name stored in every row.
        stems: prompt stems of every label of the set (echo detection).
        seen: de-duplication keys of all earlier rows of the run (updated in place); ``None``
            turns de-duplication off.
        on_batch: called with ``(accepted, attempts)`` after every sampler call (progress bars).
        chunk: at most this many rows per sampler call (how often ``on_batch`` fires; the rows do
            not depend on it).
        min_words: reject texts of fewer whitespace-separated words (reason ``short``).
        guided: pass ``spec.contrast`` to the sampler as ``contrast`` (``generate.guidance > 0``; a sampler
            without the keyword serves the unguided runs).

    Raises:
        GenerationError: more than ``20 * size + 64`` attempts were needed.
    """
    t0 = time.time()
    rows: list[dict[str, Any]] = []
    rejected: Counter[str] = Counter()
    stops: Counter[str] = Counter()
    attempt, tokens, limit = 0, 0, MAX_ATTEMPTS_FACTOR * spec.size + 64
    length = {"length": spec.length} if spec.length else {}  # rows without length classes stay as they were
    extra: dict[str, Any] = {} if spec.max_new_tokens is None else {"max_new_tokens": spec.max_new_tokens}
    if guided:
        extra["contrast"] = spec.contrast
    while len(rows) < spec.size:
        if attempt >= limit:
            raise GenerationError(f"shard {spec.index} ({spec.prompt!r}): only {len(rows)} of {spec.size} "
                                  f"samples accepted after {attempt} attempts ({dict(rejected)})")
        acceptance = len(rows) / attempt if attempt else 1.0
        draw = min(limit - attempt, chunk, math.ceil((spec.size - len(rows)) / max(acceptance, 0.2)))
        seeds = [derive_seed(spec.seed, a) for a in range(attempt, attempt + draw)]
        accepted_before = len(rows)
        continuations = sampler.sample(spec.prompt, seeds, **extra)
        tokens += sum(c.n_tokens for c in continuations)
        for offset, cont in enumerate(continuations):
            if len(rows) >= spec.size:
                break
            text, stop = postprocess(cont.text)
            reason = _reject_reason(text, stems, seen, min_words)
            if reason is not None:
                rejected[reason] += 1
                continue
            if seen is not None:
                seen.add(text_key(text))
            stops[stop] += 1
            a = attempt + offset
            rows.append({"id": f"s{spec.index:05d}-a{a:05d}", "text": text, "prompt_label": spec.label,
                         "prompt_set": prompt_set, "domain": spec.domain, "prompt": spec.prompt,
                         "shard": spec.index, "attempt": a, "seed": seeds[offset],
                         "n_tokens": cont.n_tokens, "stop": stop, **length})
        used = (rows[-1]["attempt"] + 1 - attempt) if len(rows) >= spec.size else draw
        attempt += used
        if on_batch is not None:
            on_batch(len(rows) - accepted_before, used)
    stats = {"index": spec.index, "stream": spec.stream, "label": spec.label, "domain": spec.domain,
             "prompt": spec.prompt, "seed": spec.seed, "size": spec.size, "attempts": attempt,
             "accepted": len(rows), "rejected": dict(rejected), "stops": dict(stops),
             "tokens_sampled": tokens, "seconds": round(time.time() - t0, 3), **length}
    return rows, stats
