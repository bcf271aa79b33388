"""The whole pipeline as one resumable command (``unigen run``): generate, relabel, weight, train, evaluate.

This module only orchestrates: each stage's runner lives in its package (:mod:`unigen.synth.stage`,
:mod:`unigen.weighting.stage`, :mod:`unigen.tam.stage`, :mod:`unigen.evaluation.stage`) and writes to
``<workdir>/<NN_stage>/<fingerprint>/`` (the table and the layout are :mod:`unigen.stages`), named by a
fingerprint of the settings that affect its output and of its upstream fingerprints. A finished stage is
skipped, a changed setting makes a new folder (the old one stays), and a killed run picks up where it
stopped: generation and relabeling by shard, weighting by outer epoch, training by epoch.

The same weighted synthetic data feeds every task model in ``run.tams``; the results table puts them
next to the baselines in ``run.baselines`` (VADER on the full sets, Prompting with the generator on a
fixed subsample of ``run.prompt_limit`` rows per set, scored with ``run.prompt_rule``).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from unigen.config import UniGenConfig, dump_yaml
from unigen.errors import UniGenError
from unigen.evaluation.stage import evaluate_stage, identity_of
from unigen.evaluation.tables import format_table, public_json
from unigen.files import atomic_write_json, atomic_write_text
from unigen.lock import workdir_lock
from unigen.stages import Stage
from unigen.synth.relabeling import RULES
from unigen.synth.stage import synthesize
from unigen.tam.model_card import write_model_card
from unigen.tam.stage import MODEL_DIR, train_stage
from unigen.weighting.stage import weight_stage

METHOD_NAMES = {"unigen": "UniGen", "zerogen": "ZeroGen", "sungen": "SunGen"}


def method_label(cfg: UniGenConfig) -> str:
    name = METHOD_NAMES[cfg.run.method]
    if cfg.run.domain:
        name += f" ({cfg.run.domain})"
    if cfg.run.ablations:
        name += " w/ " + ", ".join(cfg.run.ablations)
    return name


def prompting_config(cfg: UniGenConfig, relabeled: str | Path | None = None) -> UniGenConfig:
    """``cfg`` with the scoring rule of the Prompting baseline (``run.prompt_rule``): by default the rule the
    relabel stage in ``relabeled`` recorded in its manifest (``relabel.scoring_rule=auto`` chooses it at run
    time), so that the row shows the labeler the task models learnt from, used as a classifier. Without a
    recorded rule (no relabel folder, relabelling off) the configured rule is used."""
    rule = cfg.run.prompt_rule
    if rule == "relabel":
        rule = _recorded_rule(relabeled) or (
            cfg.relabel.scoring_rule if cfg.relabel.scoring_rule != "auto" else cfg.scoring.rule)
    return dataclasses.replace(cfg, scoring=dataclasses.replace(cfg.scoring, rule=rule))


def _recorded_rule(relabeled: str | Path | None) -> str | None:
    """The scoring rule a finished relabel stage folder recorded (``manifest["rule"]``), or None."""
    if relabeled is None:
        return None
    try:
        manifest = Stage.load(relabeled, "relabel").manifest
    except UniGenError:
        return None
    rule = manifest.get("rule")
    return rule if rule in RULES else None


def run_pipeline(cfg: UniGenConfig, workdir: str | Path, *, progress: bool = True,
                 log: Callable[[str], None] = print, wait: bool = False) -> dict[str, dict[str, Any]]:
    """Run (or resume, or skip) every stage; returns ``{row name: metrics}`` and writes the tables.

    The work folder is locked for the run (:func:`unigen.lock.workdir_lock`): another process using it
    makes this one raise :class:`~unigen.errors.WorkdirBusy`, or wait for it with ``wait``.
    """
    with workdir_lock(workdir, wait=wait):
        return _run_pipeline(cfg, Path(workdir), progress=progress, log=log)


def _run_pipeline(cfg: UniGenConfig, workdir: Path, *, progress: bool,
                  log: Callable[[str], None]) -> dict[str, dict[str, Any]]:
    atomic_write_text(workdir / "config.yaml", dump_yaml(cfg) + "\n")
    start = time.perf_counter()
    timings: dict[str, float] = {}

    def timed(label: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        tic = time.perf_counter()
        out = fn(*args, **kwargs)
        timings[label] = round(time.perf_counter() - tic, 1)
        log(f"[{label}] done in {timings[label]:.1f} s")
        return out

    _, relabeled = timed("generate+relabel", synthesize, cfg, workdir, progress)
    weighted = timed("weight", weight_stage, cfg, workdir, relabeled, progress=progress)
    rows: dict[str, dict[str, Any]] = {}
    stages = {"relabel": str(relabeled), "weight": str(weighted)}
    method = method_label(cfg)
    for tam in cfg.run.tams:
        trained = timed(f"train {tam}", train_stage, cfg, workdir, weighted, tam, progress=progress)
        model = str(trained / MODEL_DIR)
        stages[f"model {tam}"] = model
        rows[f"{method} {tam}"] = timed(f"evaluate {tam}", evaluate_stage, cfg, workdir, tam, model,
                                        identity_of(model, cfg), cfg.evaluate.limit, progress=progress)
        write_model_card(model, evaluation=public_json(rows[f"{method} {tam}"]))  # the card gets its table
    for baseline in cfg.run.baselines:
        if baseline == "vader":
            rows["VADER"] = timed("evaluate vader", evaluate_stage, cfg, workdir, "vader", "vader",
                                  identity_of("vader", cfg), cfg.evaluate.limit, progress=progress)
        else:
            spec, prompt_cfg = f"prompt:{cfg.generator}", prompting_config(cfg, relabeled)
            rows[f"Prompting {cfg.generator} ({prompt_cfg.scoring.rule})"] = timed(
                "evaluate prompting", evaluate_stage, prompt_cfg, workdir, "prompt", spec,
                identity_of(spec, prompt_cfg), cfg.run.prompt_limit, progress=progress)
    product = f"{method} {cfg.train.tam}" if cfg.train.tam in cfg.run.tams else next(iter(rows), None)
    _write_results(workdir, rows, timings, time.perf_counter() - start, stages, product)
    return rows


def _write_results(workdir: Path, rows: dict[str, dict[str, Any]], timings: dict[str, float], seconds: float,
                   stages: dict[str, str], product: str | None) -> None:
    """The run's tables; ``evaluation.json`` and ``run.json``'s ``model`` name the product: the task
    model of ``train.tam`` when the run trains it, else the first row."""
    if product is not None:
        atomic_write_json(workdir / "evaluation.json", public_json(rows[product]))
    atomic_write_json(workdir / "results.json", {k: public_json(v) for k, v in rows.items()})
    table = format_table(rows, title=f"Seven test sets (workdir {workdir})")
    atomic_write_text(
        workdir / "results.md",
        table
        + f"\n\nWall time of this invocation: {seconds:.0f} s; stages: "
        + ", ".join(f"{k} {v:.0f} s" for k, v in timings.items())
        + "\n",
    )
    atomic_write_json(workdir / "run.json", {"timings": timings, "seconds": round(seconds, 1),
                                             "rows": list(rows), "evaluation": product, "stages": stages,
                                             "model": stages.get(f"model {product.split(' ', 1)[1]}")
                                             if product and " " in product else None})
    if importlib.util.find_spec("matplotlib") is not None:  # the picture of the table (results.png)
        from unigen.evaluation.paper import PAPER_PROMPTING, set_dict
        from unigen.evaluation.plots import plot_accuracy

        plot_accuracy(rows, workdir / "results.png", paper=set_dict(PAPER_PROMPTING),
                      title=f"Accuracy per test set ({workdir.name})")
