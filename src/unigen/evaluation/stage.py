"""Stage 5 (``unigen evaluate``): metrics of one classifier on the real test sets, cached by its identity.

Writes ``<workdir>/05_evaluate/<fingerprint>/metrics.json``, the result of
:func:`unigen.evaluation.evaluate.evaluate_classifier`. The fingerprint covers what is evaluated
(``identity``: the train stage's fingerprint for a task model, the VADER version, or the generator and
scoring settings for Prompting), the test sets, the row limit and the subsample seed; so a classifier is
evaluated once per workdir.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from unigen.config import UniGenConfig, fingerprint_dict
from unigen.evaluation.evaluate import evaluate_classifier, load_classifier, load_eval_sets, subsample_seed
from unigen.files import atomic_write_json
from unigen.stages import Stage, open_stage

METRICS = "metrics.json"
VADER_VERSION = "3.3.2"


def identity_of(spec: str, cfg: UniGenConfig) -> dict[str, Any]:
    """What makes a classifier what it is: the key of its cached evaluation.

    ``vader`` -> the VADER version; ``prompt:<lm>`` -> generator, scoring settings and labels; a train stage
    folder (or its ``model/``) -> the train fingerprint, as ``unigen run`` records it (an adapt stage folder:
    the adapt fingerprint); any other model folder
    -> its resolved path; for task models also ``evaluate.engine`` when it is not ``auto`` (float32, bf16
    and ONNX Runtime can differ in a few labels, so their metrics are cached apart).
    """
    if spec == "vader":
        return {"vader": VADER_VERSION}
    if spec.startswith("prompt:"):
        return {"generator": spec.split(":", 1)[1] or cfg.generator, "scoring": fingerprint_dict(cfg.scoring),
                "labels": list(cfg.labels)}
    path = Path(spec)
    stage_path = path.parent if path.name == "model" else path
    if (stage_path / "manifest.json").is_file():
        stage = Stage.load(stage_path)
        kind = "adapt" if stage.manifest.get("stage") == "adapt" else "train"  # an adapted model: its own key
        identity: dict[str, Any] = {kind: Stage.load(stage_path, kind).fingerprint}
    else:
        identity = {"model": str(path.resolve())}
    # an engine named explicitly gets its own cache; "auto" keeps the key it had before engines existed
    if cfg.evaluate.engine != "auto":
        identity["engine"] = cfg.evaluate.engine
    return identity


def evaluate_settings(cfg: UniGenConfig, identity: dict[str, Any], limit: int | None) -> dict[str, Any]:
    """The settings that determine the metrics of the classifier ``identity``."""
    # "seed" is the subsample's seed (the name predates evaluate.sample_seed; renaming it would move every
    # cache)
    return {
        "identity": identity,
        "datasets": cfg.evaluate.datasets,
        "limit": limit,
        "seed": subsample_seed(cfg),
    }


def evaluate_stage(cfg: UniGenConfig, workdir: str | Path, name: str, spec: str, identity: dict[str, Any],
                   limit: int | None, *, progress: bool = True) -> dict[str, Any]:
    """Metrics of one classifier (``vader``, ``prompt:<lm>`` or a model folder), cached by ``identity``."""
    stage = open_stage("evaluate", evaluate_settings(cfg, identity, limit), workdir=workdir, seed=cfg.seed)
    metrics_path = stage.path / METRICS
    if stage.complete:
        return json.loads(metrics_path.read_text(encoding="utf-8"))
    classifier = load_classifier(spec, cfg, progress=progress)
    results = evaluate_classifier(classifier, load_eval_sets(cfg.evaluate.datasets, cfg, limit))
    atomic_write_json(metrics_path, results)
    stage.finish({"datasets": len(results) - 1, "name": name, "engine": getattr(classifier, "engine", None)})
    return results
