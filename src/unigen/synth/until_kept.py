"""UniGen's loop: generate and relabel shard by shard until ``samples_per_label`` texts survive.

Each stream (label, prompt; with ``generate.lengths`` label, length class, prompt) needs ``quota`` kept rows
(``samples_per_label`` split over the length classes and prompts, :mod:`unigen.synth.generation`).
Round 0 generates the first shard of every stream (``min(shard_size, quota)`` rows, exactly as the
fixed-size run), chooses the scoring rule on it (``auto``) and relabels it. Afterwards, while some
stream is short of kept rows, the next shard goes to the unfinished stream with the fewest shards
(ties: lowest stream id), sized ``min(shard_size, ceil(1.1 * missing / acceptance) + 8)`` with the
stream's acceptance so far; it is generated, written, relabeled and written. Everything the loop
decides is computed from the shards on disk, so a killed run resumes to the same rows. A stream can
end with up to one shard's worth of extra kept rows (nothing is trimmed). The loop stops with a
warning, targets unmet, once a label has generated ``max_generated_factor * samples_per_label`` rows.
"""

from __future__ import annotations

import math
import warnings
from collections import Counter
from pathlib import Path
from typing import Any

from unigen.config import UniGenConfig
from unigen.console import progress_bar
from unigen.stages import Stage
from unigen.synth.backends import make_relabel_scorer, make_sampler
from unigen.synth.common import load_generator
from unigen.synth.datacards import summarise, write_generation_card, write_relabel_card
from unigen.synth.generate_stage import (
    generation_streams,
    open_generation,
    prompt_stems,
    rebuild_seen,
    sample_shard,
)
from unigen.synth.generation import KeySet, Stream, shard_spec
from unigen.synth.relabel_stage import (
    LABELER_CACHE,
    finish_relabel,
    open_relabel_stage,
    relabel_shard,
    resolve_rule,
)
from unigen.synth.relabeling import Scorer


class _Loop:
    """Bookkeeping of the loop, rebuilt from disk (shard stats) on every start."""

    def __init__(self, cfg: UniGenConfig, gen: Stage, rel: Stage, streams: list[Stream]):
        self.cfg, self.gen, self.rel, self.streams = cfg, gen, rel, streams
        self.shards: Counter[int] = Counter()
        self.generated: Counter[int] = Counter()
        self.kept: Counter[int] = Counter()
        self.label_generated: Counter[int] = Counter()
        self.stream_of: dict[int, int] = {}
        for i in gen.shard_indices():
            self.add_generated(i, gen.read_stats(i))

    def add_generated(self, index: int, stats: dict[str, Any]) -> None:
        sid = stats["stream"]
        self.stream_of[index] = sid
        self.shards[sid] += 1
        self.generated[sid] += stats["accepted"]
        self.label_generated[stats["label"]] += stats["accepted"]

    def add_kept(self, index: int, kept: int) -> None:
        self.kept[self.stream_of[index]] += kept

    def missing(self, sid: int) -> int:
        return max(0, self.streams[sid].quota - self.kept[sid])

    def next_stream(self) -> int | None:
        open_ = [s for s in range(len(self.streams)) if self.missing(s) > 0]
        return min(open_, key=lambda s: (self.shards[s], s)) if open_ else None

    def next_size(self, sid: int) -> int:
        size = self.cfg.generate.shard_size
        if self.shards[sid] == 0:
            return min(size, self.streams[sid].quota)
        acceptance = max(self.kept[sid] / max(self.generated[sid], 1), 0.02)
        return min(size, math.ceil(1.1 * self.missing(sid) / acceptance) + 8)

    def over_budget(self, sid: int) -> bool:
        label = self.streams[sid].label
        budget = self.cfg.relabel.max_generated_factor * self.cfg.generate.samples_per_label
        return self.label_generated[label] >= budget


def run_until_kept(cfg: UniGenConfig, workdir: str | Path, progress: bool = True, *, sampler: Any = None,
                   scorer: Scorer | None = None, lm: tuple[Any, Any] | None = None) -> tuple[Path, Path]:
    """Run (or resume, or skip) the combined loop; returns ``(generation folder, relabel folder)``."""
    if cfg.run.executor != "local":
        from unigen.synth.ray_executor import check_executor

        check_executor(cfg)
    gen = open_generation(cfg, workdir=workdir)
    rel = open_relabel_stage(cfg, gen, workdir=workdir)
    if gen.complete and rel.complete:
        return gen.path, rel.path
    if rel.complete and not gen.complete:  # generation recomputed (a corrupt file): relabel anew too
        rel.reset(f"its generation folder {gen.path} is recomputed")
    streams = generation_streams(cfg)
    loop = _Loop(cfg, gen, rel, streams)
    lazy = _Models(cfg, lm, sampler, scorer, cache_dir=rel.path / LABELER_CACHE)
    seen = rebuild_seen(gen, cfg.generate.dedup)
    stems = prompt_stems(cfg)
    target = cfg.generate.samples_per_label * len(cfg.labels)
    with progress_bar(
        target, "generate+relabel (kept)", progress, initial=min(target, sum(loop.kept.values()))
    ) as bar:
        for i in range(len(streams)):  # round 0: the first shard of every stream
            if not gen.has_shard(i):
                _generate(loop, i, i, lazy, seen, stems)
        choice = resolve_rule(cfg, rel, gen, lazy.scorer() if cfg.relabel.mode != "none" else None)
        for i in gen.shard_indices():
            if not rel.has_shard(i):
                _relabel(loop, i, lazy, choice, bar)
            else:
                loop.add_kept(i, rel.read_stats(i)["kept"])
        met = _extend(loop, lazy, seen, stems, choice, bar)
    indices = gen.shard_indices()
    counts = summarise(gen, indices, cfg.labels)
    write_generation_card(gen, cfg, counts)
    gen.finish(counts["totals"], shards=len(indices), targets_met=met)
    finish_relabel(rel, gen, cfg, indices, choice)
    rel.update(targets_met=met)
    write_relabel_card(rel, gen, cfg)
    return gen.path, rel.path


def _extend(loop: _Loop, lazy: _Models, seen: KeySet | None, stems: list[str], choice: dict[str, Any],
            bar: Any) -> bool:
    """Add shards until every stream has its kept quota; False if the budget ran out first."""
    while (sid := loop.next_stream()) is not None:
        if loop.over_budget(sid):
            warnings.warn(f"until_kept: label {loop.cfg.labels[loop.streams[sid].label]!r} reached "
                          f"{loop.cfg.relabel.max_generated_factor}x samples_per_label generated rows; "
                          "stopping with targets unmet", stacklevel=2)
            return False
        index = max(loop.stream_of, default=-1) + 1
        _generate(loop, index, sid, lazy, seen, stems)
        _relabel(loop, index, lazy, choice, bar)
    return True


def _generate(
    loop: _Loop, index: int, sid: int, lazy: _Models, seen: KeySet | None, stems: list[str]
) -> None:
    spec = shard_spec(index, sid, loop.streams[sid], loop.cfg.labels, loop.next_size(sid), loop.cfg.seed)
    rows, stats = sample_shard(lazy.sampler(), spec, loop.cfg, seen, stems)
    loop.gen.write_shard(index, rows, stats)
    loop.add_generated(index, stats)


def _relabel(loop: _Loop, index: int, lazy: _Models, choice: dict[str, Any], bar: Any) -> None:
    scorer = lazy.scorer() if choice["rule"] != "none" else None
    rows = relabel_shard(loop.rel, loop.gen, index, scorer, choice, loop.cfg)
    kept = sum(r["keep"] for r in rows)
    before = sum(min(loop.kept[s], st.quota) for s, st in enumerate(loop.streams))
    loop.add_kept(index, kept)
    after = sum(min(loop.kept[s], st.quota) for s, st in enumerate(loop.streams))
    bar.update(after - before)
    generated = sum(loop.generated.values())
    bar.set_postfix(generated=generated, kept=f"{100 * sum(loop.kept.values()) / max(generated, 1):.1f}%",
                    refresh=False)


class _Models:
    """Loads the generator once, on first need, for both the sampler and the scorer."""

    def __init__(self, cfg: UniGenConfig, lm: tuple[Any, Any] | None, sampler: Any, scorer: Scorer | None, *,
                 cache_dir: Path | None = None):
        self.cfg, self.lm, self._sampler, self._scorer = cfg, lm, sampler, scorer
        self.cache_dir, self._scorer_built = cache_dir, False

    def _lm(self) -> tuple[Any, Any]:
        if self.lm is None:
            self.lm = load_generator(self.cfg)
        return self.lm

    def sampler(self) -> Any:
        if self._sampler is None:
            hf = self.cfg.generate.backend == "transformers"
            self._sampler = make_sampler(self.cfg, self._lm() if hf else None)
        return self._sampler

    def scorer(self) -> Scorer:
        """The given scorer or the generator's, in a labeler ensemble with ``relabel.labelers``."""
        if not self._scorer_built:
            hf = self.cfg.scoring.backend == "transformers" and self._scorer is None
            self._scorer = make_relabel_scorer(self.cfg, self._lm() if hf else None, given=self._scorer,
                                               cache_dir=self.cache_dir)
            self._scorer_built = True
        return self._scorer
