"""Relabel stage (``unigen relabel``): one relabel shard per generation shard, resumable, with a data card.

The math (soft labels, filter, rule agreement) is the pure core :mod:`unigen.synth.relabeling`.

``relabel_stage(cfg, workdir, gen_dir)`` writes ``<workdir>/02_relabel/<fingerprint>/`` whose shard
``i`` holds the rows of generation shard ``i`` plus ``scores``, ``probs``, ``label``, ``confidence``
and ``keep`` (:mod:`unigen.synth.relabeling`). Downstream stages read the rows with ``keep`` true.

Scoring rule. ``relabel.scoring_rule = auto`` scores a fixed sample (the first rows of the first
shard of every stream, ``relabel.auto_sample`` in all) with both rules and uses the one whose
``argmin`` agrees more often with the prompt labels; both agreements and the choice go into the
manifest (``rule_choice``, reused on resume) and the data card.

Labeler ensemble. With ``relabel.labelers`` the scorer is a
:class:`~unigen.synth.labeler_ensemble.LabelerEnsemble`: every row also keeps each LM's calibrated scores
(``labeler_scores``, ``{LM: [K scores]}``), the manifest names the LMs, weights and combination rule
(``labelers``) and each LM's agreement with the prompt labels (``counts.labeler_agreement``), and while the
stage runs each LM's scores of a shard are cached in ``<stage>/labeler_scores/`` (deleted when it finishes),
so a resumed stage does not score a shard again with the LMs that had finished it. Verbalizer prompt variants
(``scoring.verbalizer_extra_*``) are recorded as ``verbalizer_variants``.
"""

from __future__ import annotations

import math
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np

from unigen.config import UniGenConfig, fingerprint_dict
from unigen.console import progress_bar
from unigen.errors import ConfigError, StageError
from unigen.prompts import get_prompt_set
from unigen.stages import Stage, open_stage, stage_dir
from unigen.synth.backends import make_relabel_scorer
from unigen.synth.balance import BalanceCounter
from unigen.synth.common import generate_fingerprint, relabel_fingerprint, relabel_settings
from unigen.synth.datacards import write_relabel_card
from unigen.synth.generation import generation_lengths, plan_streams
from unigen.synth.labeler_ensemble import LabelerEnsemble
from unigen.synth.relabeling import RULES, Scorer, agreement, choose_rule, relabel_rows, score_rows

#: the folder of a running relabel stage where a labeler ensemble caches each LM's scores per shard
LABELER_CACHE = "labeler_scores"


def open_relabel_stage(cfg: UniGenConfig, gen: Stage, *, workdir: str | Path | None = None,
                       path: str | Path | None = None) -> Stage:
    """The relabel stage folder of ``cfg`` for the generation folder ``gen``."""
    gen_labels = gen.manifest.get("config", {}).get("labels")
    if gen_labels is not None and list(gen_labels) != list(cfg.labels):
        raise StageError(
            f"{gen.path} was generated with labels {gen_labels}, the config has {list(cfg.labels)}"
        )
    return open_stage("relabel", relabel_settings(cfg), workdir=workdir, path=path,
                      upstream={"generate": gen.fingerprint}, seed=cfg.seed)


def auto_sample(cfg: UniGenConfig, gen: Stage) -> list[dict[str, Any]]:
    """The rows the ``auto`` rule is chosen on: the first rows of shards ``0 .. streams-1``."""
    gen_cfg = {**fingerprint_dict(cfg.generate), **gen.manifest.get("config", {}).get("generate", {})}
    lengths = generation_lengths(gen.manifest.get("config", {}).get("generate") or gen_cfg)
    n_streams = len(plan_streams(len(cfg.labels), get_prompt_set(gen_cfg["prompt_set"]),
                                 gen_cfg["samples_per_label"], lengths))
    per = math.ceil(cfg.relabel.auto_sample / n_streams)
    rows: list[dict[str, Any]] = []
    for i in range(n_streams):
        if not gen.has_shard(i):
            raise StageError(f"{gen.path}: shard {i} is missing; the auto rule needs the first shard of "
                             "every stream")
        rows.extend(gen.read_shard(i)[:per])
    return rows


def resolve_rule(cfg: UniGenConfig, stage: Stage, gen: Stage, scorer: Scorer | None,
                 progress: bool = False) -> dict[str, Any]:
    """The scoring rule of this run (chosen once with ``auto``, then read from the manifest)."""
    if cfg.relabel.mode == "none":
        return {"rule": "none"}
    explicit = cfg.relabel.scoring_rule != "auto"
    centre = cfg.relabel.centre_scores
    if explicit and not centre:
        return {"rule": cfg.relabel.scoring_rule}
    previous = stage.manifest.get("rule_choice")
    if previous:
        return previous
    if scorer is None:
        raise ConfigError("the auto scoring rule and score centring need a scorer")
    rules = (cfg.relabel.scoring_rule,) if explicit else RULES
    choice = {**choose_rule(scorer, auto_sample(cfg, gen), rules=rules, centre=centre, progress=progress),
              "how": "config" if explicit else "auto"}
    stage.update(rule_choice=choice)
    return choice


def relabel_shard(stage: Stage, gen: Stage, index: int, scorer: Scorer | None, choice: dict[str, Any],
                  cfg: UniGenConfig, progress: bool = False) -> list[dict[str, Any]]:
    """Relabel generation shard ``index`` (scores centred by the choice's offset) and write relabel shard
    ``index``."""
    t0 = time.time()
    rows = gen.read_shard(index)
    rule = choice["rule"]
    by_labeler = None
    if rule == "none":
        scores = None
    elif isinstance(scorer, LabelerEnsemble):
        by_labeler = scorer.member_scores([r["text"] for r in rows], progress)
        scores = scorer.combine(by_labeler)
    else:
        scores = score_rows(scorer, rows, rule, progress)  # type: ignore[arg-type]
    if scores is not None and choice.get("centred"):
        scores = scores - np.asarray(choice["offset"])
    out = relabel_rows(rows, scores, len(cfg.labels), cfg.relabel, labeler_scores=by_labeler)
    kept = sum(r["keep"] for r in out)
    agree = sum(r["label"] == r["prompt_label"] for r in out)
    stage.write_shard(index, out, {"index": index, "rows": len(out), "kept": kept, "agree": agree,
                                   "rule": rule, "seconds": round(time.time() - t0, 3)})
    return out


def relabel_into(cfg: UniGenConfig, gen_dir: str | Path, out: str | Path, progress: bool = True, *,
                 scorer: Scorer | None = None, lm: tuple[Any, Any] | None = None) -> Path:
    """Run (or resume, or skip) the relabel stage of a finished generation folder into ``out``."""
    gen = Stage.load(gen_dir, "generate")
    stage = open_relabel_stage(cfg, gen, path=out)
    if stage.complete:
        return stage.path
    indices = gen.shard_indices()
    todo = [i for i in indices if not stage.has_shard(i)]
    on_ray = bool(todo) and cfg.run.executor == "ray"
    executor: dict[str, Any] = {}
    if todo and cfg.relabel.mode != "none" and (not on_ray or cfg.relabel.labelers):
        # loads the generator now, but on Ray (where the driver loads no model) only builds a lazy ensemble
        scorer = make_relabel_scorer(cfg, lm, given=scorer, cache_dir=(stage.path / LABELER_CACHE).absolute())
    if on_ray:  # the rule choice, if any, runs on a Ray actor too: the driver loads no model
        from unigen.synth.ray_executor import RemoteScorer, ray_relabel

        remote = RemoteScorer(cfg, scorer, lm)
        try:
            choice = resolve_rule(cfg, stage, gen, remote, progress)
        finally:
            remote.close()
    else:
        choice = resolve_rule(cfg, stage, gen, scorer, progress)
    total = int(gen.manifest.get("counts", {}).get("rows", 0)) or None
    done_rows = sum(stage.read_stats(i).get("rows", 0) for i in indices if i not in todo)
    with progress_bar(total or 0, f"relabel ({choice['rule']})", progress, initial=done_rows) as bar:
        if on_ray:
            executor = {"executor": ray_relabel(cfg, stage, gen, todo, choice, bar, relabel=relabel_shard,
                                                scorer=scorer, lm=lm)}
        kept = seen = 0
        for i in [] if on_ray else todo:
            rows = relabel_shard(stage, gen, i, scorer, choice, cfg, progress)
            kept, seen = kept + sum(r["keep"] for r in rows), seen + len(rows)
            bar.update(len(rows))
            bar.set_postfix(kept=f"{100 * kept / max(seen, 1):.1f}%", refresh=False)
    finish_relabel(stage, gen, cfg, indices, choice, **executor)
    write_relabel_card(stage, gen, cfg)
    return stage.path


def finish_relabel(
    stage: Stage, gen: Stage, cfg: UniGenConfig, indices: list[int], choice: dict[str, Any], **extra: Any
) -> None:
    rows = kept = agree = 0
    seconds = 0.0
    for i in indices:
        st = stage.read_stats(i)
        rows, kept, agree, seconds = (
            rows + st["rows"],
            kept + st["kept"],
            agree + st["agree"],
            seconds + st["seconds"],
        )
    by_labeler: dict[str, list[list[float]]] = {}
    prompt_labels = []
    balance = BalanceCounter(len(cfg.labels))
    for row in stage.iter_rows(indices):
        balance.add(row)  # also counts the kept rows per relabel label (its pool)
        prompt_labels.append(row["prompt_label"])
        for name, scores in row.get("labeler_scores", {}).items():
            by_labeler.setdefault(name, []).append(scores)
    counts = {"rows": rows, "kept": kept, "acceptance": round(kept / rows, 4) if rows else None,
              "kept_per_label": dict(zip(cfg.labels, balance.pool)),
              "agreement_all": round(agree / rows, 4) if rows else None, "shard_seconds": round(seconds, 2),
              "sentences_per_s": round(rows / seconds, 3) if seconds else None,
              "balance": balance.summary(cfg.labels)}
    if by_labeler:  # each LM of the ensemble alone: its argmin against the prompt labels
        counts["labeler_agreement"] = {name: round(agreement(np.asarray(s), prompt_labels), 4)
                                       for name, s in by_labeler.items()}
    shutil.rmtree(stage.path / LABELER_CACHE, ignore_errors=True)
    stage.finish(counts, rule=choice["rule"], rule_choice=choice, shards=len(indices),
                 **labeling_record(cfg, choice["rule"]), **extra)


def labeling_record(cfg: UniGenConfig, rule: str) -> dict[str, Any]:
    """The manifest's record of a labeler ensemble (``labelers``) and of verbalizer prompt variants
    (``verbalizer_variants``); empty for a single LM and prompt (the paper)."""
    out: dict[str, Any] = {}
    if rule == "none":
        return out
    r, s = cfg.relabel, cfg.scoring
    if r.labelers:
        out["labelers"] = {"names": list(r.labeler_names(cfg.generator)), "combine": r.combine,
                           "weights": list(r.resolved_labeler_weights())}
    if rule == "verbalizer" and s.has_verbalizer_variants():
        out["verbalizer_variants"] = {"prompts": list(s.verbalizer_templates()),
                                      "label_words": [list(w) for w in s.verbalizer_word_sets(cfg.labels)]}
    return out


def relabel_stage(cfg: UniGenConfig, workdir: str | Path, gen_dir: str | Path | None = None,
                  progress: bool = True, *, scorer: Scorer | None = None,
                  lm: tuple[Any, Any] | None = None) -> Path:
    """Run the relabel stage under ``workdir`` and return its finished folder.

    ``gen_dir`` defaults to the generation folder of ``cfg`` under ``workdir``. With ``relabel.until_kept``
    the two stages run together: use :func:`unigen.synth.stage.synthesize`.
    """
    if cfg.relabel.until_kept:
        raise ConfigError(
            "relabel.until_kept generates and relabels together: use unigen.synth.stage.synthesize"
        )
    gen_dir = (
        Path(gen_dir) if gen_dir is not None else stage_dir(workdir, "generate", generate_fingerprint(cfg))
    )
    gen = Stage.load(gen_dir, "generate")
    return relabel_into(
        cfg,
        gen_dir,
        stage_dir(workdir, "relabel", relabel_fingerprint(cfg, gen.fingerprint)),
        progress,
        scorer=scorer,
        lm=lm,
    )
