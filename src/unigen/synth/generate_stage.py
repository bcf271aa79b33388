"""Generation stage (``unigen generate``): stage folder, shards on disk, resume, progress bar, data card.

The pure core (post-processing, shard plan, one shard in memory) is :mod:`unigen.synth.generation` and
the sampler :mod:`unigen.synth.sampling`; the data card is written by :mod:`unigen.synth.datacards`.

``generate_stage(cfg, workdir)`` writes ``<workdir>/01_generate/<fingerprint>/`` (layout in
:mod:`unigen.stages`) and returns it; a finished folder is returned at once. A run killed at any
moment and started again skips the finished shards, rebuilds the de-duplication set from them and
produces exactly the rows of an uninterrupted run (shard seeds do not depend on earlier progress).

With ``relabel.until_kept`` the generation is driven by the relabel filter instead
(:func:`unigen.synth.until_kept.run_until_kept`, both stage folders filled together): call
:func:`unigen.synth.stage.synthesize`, which picks the right loop.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from unigen.config import UniGenConfig
from unigen.console import progress_bar
from unigen.errors import ConfigError
from unigen.prompts import get_prompt_set
from unigen.stages import Stage, open_stage, stage_dir
from unigen.synth.backends import make_sampler
from unigen.synth.common import generate_fingerprint, generate_settings
from unigen.synth.datacards import Acceptance, summarise, write_generation_card
from unigen.synth.generation import (
    KeySet,
    ShardSpec,
    Stream,
    generate_shard,
    plan_shards,
    plan_streams,
    text_key,
)
from unigen.synth.sampling import TextSampler


def open_generation(
    cfg: UniGenConfig, *, workdir: str | Path | None = None, path: str | Path | None = None
) -> Stage:
    """The generation stage folder of ``cfg`` (``<workdir>/01_generate/<fingerprint>`` or ``path``)."""
    return open_stage("generate", generate_settings(cfg), workdir=workdir, path=path, seed=cfg.seed)


def prompt_stems(cfg: UniGenConfig) -> list[str]:
    """The stems of every prompt the run samples from, for every label (echo detection): the prompt set's
    and, with ``generate.lengths``, its length-class variants too."""
    prompts = list(get_prompt_set(cfg.generate.prompt_set))
    prompts += [p.with_length(v.length) for v in cfg.generate.length_variants() for p in prompts]
    return [p.stem(lab) for p in prompts for lab in cfg.labels]


def generation_streams(cfg: UniGenConfig) -> list[Stream]:
    """The streams of ``cfg``'s generation (label x length class x prompt, :func:`plan_streams`)."""
    g = cfg.generate
    prompts = get_prompt_set(g.prompt_set)
    return plan_streams(len(cfg.labels), prompts, g.samples_per_label, g.length_variants())


def rebuild_seen(stage: Stage, enabled: bool) -> KeySet | None:
    """De-duplication keys of every finished shard (``None`` when de-duplication is off)."""
    if not enabled:
        return None
    return KeySet(text_key(r["text"]) for r in stage.iter_rows())


def sample_shard(sampler: TextSampler, spec: ShardSpec, cfg: UniGenConfig, seen: KeySet | None,
                 stems: list[str], on_batch: Any = None) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """:func:`generate_shard` with the settings of ``cfg.generate`` (both generation loops use it)."""
    return generate_shard(sampler, spec, prompt_set=cfg.generate.prompt_set, stems=stems, seen=seen,
                          on_batch=on_batch, chunk=cfg.generate.batch_size, min_words=cfg.generate.min_words,
                          guided=cfg.generate.guidance > 0)


def run_shard(stage: Stage, sampler: TextSampler, spec: ShardSpec, cfg: UniGenConfig, seen: KeySet | None,
              stems: list[str], on_batch: Any = None) -> list[dict[str, Any]]:
    rows, stats = sample_shard(sampler, spec, cfg, seen, stems, on_batch)
    stage.write_shard(spec.index, rows, stats)
    return rows


def plan_generation(cfg: UniGenConfig) -> list[ShardSpec]:
    """Every shard of the fixed-size generation stage of ``cfg``."""
    return plan_shards(generation_streams(cfg), cfg.labels, cfg.generate.shard_size, cfg.seed)


def generate_into(cfg: UniGenConfig, out: str | Path, progress: bool = True, *,
                  sampler: TextSampler | None = None, lm: tuple[Any, Any] | None = None) -> Path:
    """Run (or resume, or skip) the fixed-size generation stage in the folder ``out`` (its shards on this
    process, or with ``run.executor = ray`` on Ray actors: :mod:`unigen.synth.ray_executor`)."""
    stage = open_generation(cfg, path=out)
    if stage.complete:
        return stage.path
    specs = plan_generation(cfg)
    done = set(stage.shard_indices())
    todo = [s for s in specs if s.index not in done]
    executor: dict[str, Any] = {}
    if todo:
        total = sum(s.size for s in specs)
        with progress_bar(total, "generate", progress, initial=total - sum(s.size for s in todo)) as bar:
            if cfg.run.executor == "ray":
                from unigen.synth.ray_executor import ray_generate

                executor = {"executor": ray_generate(cfg, stage, todo, bar, stems=prompt_stems(cfg),
                                                     sample=sample_shard, sampler=sampler, lm=lm)}
            else:
                seen = rebuild_seen(stage, cfg.generate.dedup)
                sampler = sampler or make_sampler(cfg, lm)
                stems = prompt_stems(cfg)
                counter = Acceptance(bar)
                for spec in todo:
                    run_shard(stage, sampler, spec, cfg, seen, stems, counter)
    counts = summarise(stage, [s.index for s in specs], cfg.labels)
    write_generation_card(stage, cfg, counts)
    stage.finish(counts["totals"], shards=len(specs), **executor)
    return stage.path


def generate_stage(cfg: UniGenConfig, workdir: str | Path, progress: bool = True, *,
                   sampler: TextSampler | None = None, lm: tuple[Any, Any] | None = None) -> Path:
    """Run the fixed-size generation stage under ``workdir`` and return its finished folder."""
    if cfg.relabel.until_kept:
        raise ConfigError(
            "relabel.until_kept generates and relabels together: use unigen.synth.stage.synthesize"
        )
    return generate_into(cfg, stage_dir(workdir, "generate", generate_fingerprint(cfg)), progress,
                         sampler=sampler, lm=lm)
