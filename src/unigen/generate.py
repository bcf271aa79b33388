"""Generation stage (``unigen generate``): stage folder, shards on disk, resume, progress bar, data card.

The pure core (post-processing, shard plan, one shard in memory) is :mod:`unigen.generate_core` and
the sampler :mod:`unigen.sampling`; their public names are re-exported here.

``generate_stage(cfg, workdir)`` writes ``<workdir>/01_generate/<fingerprint>/`` (layout in
:mod:`unigen.artifacts`) and returns it; a finished folder is returned at once. A run killed at any
moment and started again skips the finished shards, rebuilds the de-duplication set from them and
produces exactly the rows of an uninterrupted run (shard seeds do not depend on earlier progress).

With ``relabel.until_kept`` the generation is driven by the relabel filter instead
(:func:`unigen.until_kept.run_until_kept`), and both stage folders are filled together.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from unigen.artifacts import Stage, stage_dir, stage_fingerprint
from unigen.config import UniGenConfig, fingerprint_dict
from unigen.datacard import TextStats, md_table, pct, stats_table
from unigen.generate_core import (  # noqa: F401  (re-exported)
    GenerationError,
    KeySet,
    ShardSpec,
    Stream,
    generate_shard,
    is_prompt_echo,
    plan_shards,
    plan_streams,
    postprocess,
    text_key,
)
from unigen.prompts import get_prompt_set
from unigen.sampling import LMSampler, SamplingSettings, TextSampler

STAGE = "generate"  # the manifest's stage name
STAGE_DIR = "01_generate"  # the folder under the workdir
STAGE_VERSION = 1


def generate_settings(cfg: UniGenConfig) -> dict[str, Any]:
    """The settings that determine the generated rows (the manifest's config subset)."""
    out: dict[str, Any] = {"seed": cfg.seed, "labels": list(cfg.labels), "generator": cfg.generator,
                           "generate": fingerprint_dict(cfg.generate), "until_kept": cfg.relabel.until_kept}
    if cfg.relabel.until_kept:  # which shards exist then depends on the relabel filter
        out["relabel"] = fingerprint_dict(cfg.relabel)
        from unigen.relabel import scoring_settings

        out["scoring"] = scoring_settings(cfg)
    return out


def generate_fingerprint(cfg: UniGenConfig) -> str:
    return stage_fingerprint(STAGE, STAGE_VERSION, generate_settings(cfg))


def sampling_settings(cfg: UniGenConfig) -> SamplingSettings:
    g = cfg.generate
    return SamplingSettings(top_k=g.top_k, top_p=g.top_p, temperature=g.temperature, max_new_tokens=g.max_new_tokens)


def load_generator(cfg: UniGenConfig) -> tuple[Any, Any]:
    """(model, tokenizer) of ``cfg.generator`` on ``cfg.device``."""
    from unigen.lm import pick_device
    from unigen.registry import load_causal_lm

    return load_causal_lm(cfg.generator, device=pick_device(cfg.device))


def make_sampler(cfg: UniGenConfig, lm: tuple[Any, Any] | None = None) -> LMSampler:
    """The fast sampler for ``cfg`` (loads the generator unless ``lm`` is given)."""
    model, tokenizer = lm or load_generator(cfg)
    if cfg.generate.precision == "bf16":
        import copy

        import torch

        model = copy.deepcopy(model).to(torch.bfloat16)
    return LMSampler(model, tokenizer, sampling_settings(cfg), batch_size=cfg.generate.batch_size)


def open_stage(cfg: UniGenConfig, out: Path) -> Stage:
    return Stage.open(out, stage=STAGE, fingerprint=generate_fingerprint(cfg), config=generate_settings(cfg),
                      seed=cfg.seed)


def prompt_stems(cfg: UniGenConfig) -> list[str]:
    return [p.stem(lab) for p in get_prompt_set(cfg.generate.prompt_set) for lab in cfg.labels]


def rebuild_seen(stage: Stage, enabled: bool) -> KeySet | None:
    """De-duplication keys of every finished shard (``None`` when de-duplication is off)."""
    if not enabled:
        return None
    return KeySet(text_key(r["text"]) for r in stage.iter_rows())


def progress_bar(total: int, initial: int, desc: str, enabled: bool) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc=desc, unit="sample", disable=not enabled,
                dynamic_ncols=True, smoothing=0.1)


class Acceptance:
    """Running accepted/attempted counts shown as the progress bar's postfix."""

    def __init__(self, bar: Any):
        self.bar, self.accepted, self.attempts = bar, 0, 0

    def __call__(self, accepted: int, attempts: int) -> None:
        self.accepted += accepted
        self.attempts += attempts
        self.bar.update(accepted)
        self.bar.set_postfix(acceptance=pct(self.accepted, self.attempts), refresh=False)


def sample_shard(sampler: TextSampler, spec: ShardSpec, cfg: UniGenConfig, seen: KeySet | None,
                 stems: list[str], on_batch: Any = None) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """:func:`generate_shard` with the settings of ``cfg.generate`` (both generation loops use it)."""
    return generate_shard(sampler, spec, prompt_set=cfg.generate.prompt_set, stems=stems, seen=seen,
                          on_batch=on_batch, chunk=cfg.generate.batch_size, min_words=cfg.generate.min_words)


def run_shard(stage: Stage, sampler: TextSampler, spec: ShardSpec, cfg: UniGenConfig, seen: KeySet | None,
              stems: list[str], on_batch: Any = None) -> list[dict[str, Any]]:
    rows, stats = sample_shard(sampler, spec, cfg, seen, stems, on_batch)
    stage.write_shard(spec.index, rows, stats)
    return rows


def generate_into(cfg: UniGenConfig, out: str | Path, progress: bool = True, *,
                  sampler: TextSampler | None = None, lm: tuple[Any, Any] | None = None) -> Path:
    """Run (or resume, or skip) the fixed-size generation stage in the folder ``out``."""
    stage = open_stage(cfg, Path(out))
    if stage.complete:
        return stage.path
    labels = cfg.labels
    streams = plan_streams(len(labels), get_prompt_set(cfg.generate.prompt_set), cfg.generate.samples_per_label)
    specs = plan_shards(streams, labels, cfg.generate.shard_size, cfg.seed)
    done = set(stage.shard_indices())
    todo = [s for s in specs if s.index not in done]
    if todo:
        seen = rebuild_seen(stage, cfg.generate.dedup)
        sampler = sampler or make_sampler(cfg, lm)
        stems = prompt_stems(cfg)
        total = sum(s.size for s in specs)
        with progress_bar(total, total - sum(s.size for s in todo), "generate", progress) as bar:
            counter = Acceptance(bar)
            for spec in todo:
                run_shard(stage, sampler, spec, cfg, seen, stems, counter)
    counts = summarise(stage, [s.index for s in specs], labels)
    write_generation_card(stage, cfg, counts)
    stage.finish(counts["totals"], shards=len(specs))
    return stage.path


def generate_stage(cfg: UniGenConfig, workdir: str | Path, progress: bool = True, *,
                   sampler: TextSampler | None = None, lm: tuple[Any, Any] | None = None) -> Path:
    """Run the generation stage under ``workdir`` and return its finished folder.

    With ``cfg.relabel.until_kept`` this runs the combined generate-and-filter loop, which also
    finishes the relabel stage folder.
    """
    if cfg.relabel.until_kept:
        from unigen.until_kept import run_until_kept

        return run_until_kept(cfg, workdir, progress, sampler=sampler, lm=lm)[0]
    return generate_into(cfg, stage_dir(workdir, STAGE_DIR, generate_fingerprint(cfg)), progress,
                         sampler=sampler, lm=lm)


# ---------------------------------------------------------------- summary and card

def summarise(stage: Stage, indices: list[int], labels: tuple[str, ...]) -> dict[str, Any]:
    """Counts per label / domain, rejection reasons, stop reasons and text statistics (one pass)."""
    per_label: Counter[int] = Counter()
    attempts: Counter[int] = Counter()
    rejected: Counter[str] = Counter()
    stops: Counter[str] = Counter()
    domains: Counter[str] = Counter()
    tokens, seconds = 0, 0.0
    for i in indices:
        st = stage.read_stats(i)
        attempts[st["label"]] += st["attempts"]
        rejected.update(st["rejected"])
        stops.update(st["stops"])
        tokens += st["tokens_sampled"]
        seconds += st["seconds"]
    text = TextStats()
    for row in stage.iter_rows(indices):
        per_label[row["prompt_label"]] += 1
        domains[row["domain"]] += 1
        text.add(row["text"])
    rows = sum(per_label.values())
    att = sum(attempts.values())
    totals = {"rows": rows, "attempts": att, "acceptance": round(rows / att, 4) if att else None,
              "per_label": {labels[k]: per_label[k] for k in sorted(per_label)},
              "rejected": dict(rejected), "stops": dict(stops), "tokens_sampled": tokens,
              "shard_seconds": round(seconds, 2),
              "samples_per_s": round(rows / seconds, 3) if seconds else None}
    return {"totals": totals, "attempts": attempts, "domains": domains, "text": text.summary()}


def write_generation_card(stage: Stage, cfg: UniGenConfig, counts: dict[str, Any]) -> None:
    t, g = counts["totals"], cfg.generate
    label_rows = [[lab, t["per_label"].get(lab, 0), counts["attempts"].get(k, 0),
                   pct(t["per_label"].get(lab, 0), counts["attempts"].get(k, 0))] for k, lab in enumerate(cfg.labels)]
    lines = [
        f"# Generated data `{stage.path.name}`", "",
        f"Generator `{cfg.generator}`, prompt set `{g.prompt_set}`, seed {cfg.seed}; top-k {g.top_k}, "
        f"top-p {g.top_p}, temperature {g.temperature}, at most {g.max_new_tokens} new tokens, "
        f"{g.precision}, de-duplication {'on' if g.dedup else 'off'}"
        f"{f', at least {g.min_words} words' if g.min_words else ''}.", "",
        md_table(["label", "rows", "attempts", "acceptance"], label_rows), "",
        f"Rejected: {t['rejected'] or 'none'}. Ended by: {t['stops']} (`none` = no closing quote or "
        f"newline within the token budget; kept, as in the paper). Domains: {dict(counts['domains'])}.", "",
        stats_table({"generated": counts["text"]}), "",
        f"Throughput: {t['samples_per_s']} accepted samples/s over {t['shard_seconds']} s of shard time, "
        f"{t['tokens_sampled']} tokens sampled.", "",
    ]
    (stage.path / "datacard.md").write_text("\n".join(lines))
