"""The whole pipeline as one resumable command (``unigen run``): generate, relabel, weight, train, evaluate.

Each stage writes to ``<workdir>/<NN_stage>/<fingerprint>/`` (see :mod:`unigen.artifacts`), named by a
fingerprint of the settings that affect its output and of its upstream fingerprints. A finished stage is
skipped, a changed setting makes a new folder (the old one stays), and a killed run picks up where it
stopped: generation and relabeling by shard, weighting by outer epoch, training by epoch.

The same weighted synthetic data feeds every task model in ``run.tams``; the results table puts them
next to the baselines in ``run.baselines`` (VADER on the full sets, Prompting with the generator on a
fixed subsample of ``run.prompt_limit`` rows per set).
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from unigen.artifacts import (
    Stage,
    StageError,
    atomic_write_json,
    iter_stage_rows,
    stage_dir,
    stage_fingerprint,
    write_jsonl_atomic,
)
from unigen.config import UniGenConfig, dump_yaml, fingerprint_dict

WEIGHT_VERSION = 1
TRAIN_VERSION = 1
EVALUATE_VERSION = 1
METHOD_NAMES = {"unigen": "UniGen", "zerogen": "ZeroGen", "sungen": "SunGen"}


def method_label(cfg: UniGenConfig) -> str:
    name = METHOD_NAMES[cfg.run.method]
    if cfg.run.domain:
        name += f" ({cfg.run.domain})"
    if cfg.run.ablations:
        name += " w/ " + ", ".join(cfg.run.ablations)
    return name


def training_rows(relabeled: Iterable[dict[str, Any]], mode: str) -> list[dict[str, Any]]:
    """Kept relabeled rows as training rows: soft -> ``probs``; hard -> relabel argmax; none -> prompt label."""
    rows = []
    for r in relabeled:
        if not r.get("keep", True):
            continue
        row = {"id": r["id"], "text": r["text"], "prompt_label": r["prompt_label"]}
        if mode == "soft":
            row["probs"] = r["probs"]
        row["label"] = r["prompt_label"] if mode == "none" else r["label"]
        rows.append(row)
    return rows


# ---------------------------------------------------------------- stages 3-5

def _weight_settings(cfg: UniGenConfig) -> dict[str, Any]:
    t = cfg.train
    return {"weight": fingerprint_dict(cfg.weight), "labels": list(cfg.labels), "seed": cfg.seed,
            "relabel_mode": cfg.relabel.mode,
            "tam_shape": {"max_length": t.max_length, "lstm_hidden": t.lstm_hidden,
                          "projection_dim": t.projection_dim}}


def weight_stage(cfg: UniGenConfig, workdir: Path, relabel_dir: Path, *, progress: bool = True) -> Path:
    """SunGen weights (or pass-through when ``weight.enabled`` is off) of the kept relabeled rows."""
    from unigen.weight_stage import weight_rows

    upstream = {"relabel": Stage.load(relabel_dir, "relabel").fingerprint}
    settings = _weight_settings(cfg)
    fp = stage_fingerprint("weight", WEIGHT_VERSION, settings, upstream=upstream)
    stage = Stage.open(stage_dir(workdir, "03_weight", fp), stage="weight", fingerprint=fp, config=settings,
                       upstream=upstream, seed=cfg.seed)
    if stage.complete:
        return stage.path
    rows = training_rows(iter_stage_rows(relabel_dir, "relabel"), cfg.relabel.mode)
    if not rows:
        raise StageError(f"{relabel_dir}: the relabel filter kept no rows; generate more or relax relabel.threshold")
    if cfg.weight.enabled:
        rows, history, summary = weight_rows(rows, stage.path, cfg, progress=progress)
        write_jsonl_atomic(stage.path / "history.jsonl", history)
    else:
        summary = {"rows": len(rows), "selected": len(rows)}
    stage.write_shard(0, rows)
    stage.finish(summary)
    return stage.path


def train_stage(cfg: UniGenConfig, workdir: Path, weight_dir: Path, tam: str, *, progress: bool = True) -> Path:
    """One task model trained on the selected weighted rows; the model lands in ``<stage>/model``."""
    from unigen.train import resolved_epochs, train_task_model
    from unigen.train_data import parse_rows

    train_cfg = dataclasses.replace(cfg.train, tam=tam)
    upstream = {"weight": Stage.load(weight_dir, "weight").fingerprint}
    settings = {"train": fingerprint_dict(train_cfg), "labels": list(cfg.labels), "seed": cfg.seed}
    fp = stage_fingerprint("train", TRAIN_VERSION, settings, upstream=upstream)
    stage = Stage.open(stage_dir(workdir, "04_train", fp), stage="train", fingerprint=fp, config=settings,
                       upstream=upstream, seed=cfg.seed)
    if stage.complete:
        return stage.path
    data = parse_rows(list(iter_stage_rows(weight_dir, "weight")), len(cfg.labels), source=str(weight_dir))
    result = train_task_model(data, train_cfg, cfg.labels, seed=cfg.seed, workdir=stage.path / "checkpoints",
                              progress=progress, device=cfg.device)
    result.model.save_pretrained(stage.path / "model", training={
        "rows": len(data.texts), "seed": cfg.seed, "epochs": resolved_epochs(train_cfg),
        "best_epoch": result.best_epoch, "best_valid_acc": result.best_valid_acc, "history": result.history})
    (stage.path / "checkpoints" / "checkpoint.pt").unlink(missing_ok=True)
    stage.finish({"rows": len(data.texts), "best_epoch": result.best_epoch,
                  "best_valid_acc": result.best_valid_acc, "tam": tam})
    return stage.path


def evaluate_stage(cfg: UniGenConfig, workdir: Path, name: str, spec: str, identity: dict[str, Any],
                   limit: int | None) -> dict[str, Any]:
    """Metrics of one classifier (``vader``, ``prompt:<lm>`` or a model folder), cached by ``identity``."""
    from unigen.evaluate import evaluate_classifier, load_classifier, load_eval_sets, subsample_seed

    # "seed" is the subsample's seed (the name predates evaluate.sample_seed; renaming it would move every cache)
    settings = {"identity": identity, "datasets": cfg.evaluate.datasets, "limit": limit, "seed": subsample_seed(cfg)}
    fp = stage_fingerprint("evaluate", EVALUATE_VERSION, settings)
    stage = Stage.open(stage_dir(workdir, "05_evaluate", fp), stage="evaluate", fingerprint=fp,
                       config=settings, seed=cfg.seed)
    metrics_path = stage.path / "metrics.json"
    if stage.complete:
        return json.loads(metrics_path.read_text())
    results = evaluate_classifier(load_classifier(spec, cfg), load_eval_sets(cfg.evaluate.datasets, cfg, limit))
    atomic_write_json(metrics_path, results)
    stage.finish({"datasets": len(results) - 1, "name": name})
    return results


# ---------------------------------------------------------------- the run

def synthetic_data(cfg: UniGenConfig, workdir: Path, progress: bool) -> Path:
    """Stages 1-2; returns the finished relabel stage folder."""
    from unigen.generate import generate_stage
    from unigen.relabel import relabel_stage

    generated = generate_stage(cfg, workdir, progress=progress)
    return relabel_stage(cfg, workdir, generated, progress=progress)


def run_pipeline(cfg: UniGenConfig, workdir: str | Path, *, progress: bool = True,
                 log: Callable[[str], None] = print) -> dict[str, dict[str, Any]]:
    """Run (or resume, or skip) every stage; returns ``{row name: metrics}`` and writes the tables."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "config.yaml").write_text(dump_yaml(cfg) + "\n")
    start = time.perf_counter()
    timings: dict[str, float] = {}

    def timed(label: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        tic = time.perf_counter()
        out = fn(*args, **kwargs)
        timings[label] = round(time.perf_counter() - tic, 1)
        log(f"[{label}] done in {timings[label]:.1f} s")
        return out

    relabeled = timed("generate+relabel", synthetic_data, cfg, workdir, progress)
    weighted = timed("weight", weight_stage, cfg, workdir, relabeled, progress=progress)
    rows: dict[str, dict[str, Any]] = {}
    stages = {"relabel": str(relabeled), "weight": str(weighted)}
    method = method_label(cfg)
    for tam in cfg.run.tams:
        trained = timed(f"train {tam}", train_stage, cfg, workdir, weighted, tam, progress=progress)
        stages[f"model {tam}"] = str(trained / "model")
        identity = {"train": Stage.load(trained, "train").fingerprint}
        rows[f"{method} {tam}"] = timed(f"evaluate {tam}", evaluate_stage, cfg, workdir, tam,
                                        str(trained / "model"), identity, cfg.evaluate.limit)
    for baseline in cfg.run.baselines:
        if baseline == "vader":
            rows["VADER"] = timed("evaluate vader", evaluate_stage, cfg, workdir, "vader", "vader",
                                  {"vader": "3.3.2"}, cfg.evaluate.limit)
        else:
            identity = {"generator": cfg.generator, "scoring": fingerprint_dict(cfg.scoring),
                        "labels": list(cfg.labels)}
            rows[f"Prompting {cfg.generator} ({cfg.scoring.rule})"] = timed(
                "evaluate prompting", evaluate_stage, cfg, workdir, "prompt", f"prompt:{cfg.generator}",
                identity, cfg.run.prompt_limit)
    _write_results(workdir, rows, timings, time.perf_counter() - start, stages)
    return rows


def _write_results(workdir: Path, rows: dict[str, dict[str, Any]], timings: dict[str, float], seconds: float,
                   stages: dict[str, str]) -> None:
    from unigen.evaluate import format_table, public_json

    first_tam = next(iter(rows))
    atomic_write_json(workdir / "evaluation.json", public_json(rows[first_tam]))
    atomic_write_json(workdir / "results.json", {k: public_json(v) for k, v in rows.items()})
    table = format_table(rows, title=f"Seven test sets (workdir {workdir})")
    (workdir / "results.md").write_text(table + f"\n\nWall time of this invocation: {seconds:.0f} s; stages: "
                                        + ", ".join(f"{k} {v:.0f} s" for k, v in timings.items()) + "\n")
    atomic_write_json(workdir / "run.json", {"timings": timings, "seconds": round(seconds, 1),
                                             "rows": list(rows), "evaluation": first_tam, "stages": stages})


def stage_status(workdir: str | Path) -> list[dict[str, Any]]:
    """Every stage folder under ``workdir`` with its status, counts and time, in stage order."""
    out = []
    for manifest in sorted(Path(workdir).glob("*/*/manifest.json")):
        m = json.loads(manifest.read_text())
        out.append({"stage": manifest.parent.parent.name, "fingerprint": m.get("fingerprint"),
                    "status": m.get("status"), "counts": m.get("counts", {}),
                    "seconds": m.get("timings", {}).get("seconds"), "path": str(manifest.parent)})
    return out
