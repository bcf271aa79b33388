"""Run a matrix of pipeline cells (the paper's tables) resumably, sharing stages through fingerprints.

An experiment file (YAML)::

    workdir: runs/paper              # one work folder for every cell: equal stages are computed once
    output: results/paper_table.json # one record per (cell, task model, seed)
    base: [generate.samples_per_label=1000, evaluate.limit=1000]   # dotted overrides for every cell
    cells:
      - {group: main, method: unigen, tams: [lstm, minilm-l6], seeds: [1, 2, 3]}
      - {group: main, method: zerogen, domains: all, tams: [lstm, minilm-l6]}
      - {group: ablation, method: unigen, ablations: [no-scl], tams: [minilm-l6], seeds: [1, 2, 3]}
      - {group: generator, method: unigen, set: [generator=gemma3-270m], tams: [minilm-l6]}

Each cell expands over its ``domains`` and ``seeds`` (default: the base seed). Finished records are
kept in the output file and skipped, so the runner can be stopped and started again at any point; the
pipeline's stage folders make a half-finished cell resume where it stopped.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from unigen.config import load_config
from unigen.config.loading import read_yaml
from unigen.config.presets import GENERATION_DOMAINS
from unigen.errors import CellsFailed, ConfigError
from unigen.files import atomic_write_json
from unigen.lock import workdir_lock


@dataclass(frozen=True)
class Cell:
    group: str
    method: str
    tams: tuple[str, ...]
    seed: int | None = None
    domain: str | None = None
    ablations: tuple[str, ...] = ()
    settings: tuple[str, ...] = ()
    label: str = ""

    def overrides(self, base: list[str]) -> list[str]:
        out = [*base, f"run.method={self.method}", f"run.tams=[{', '.join(self.tams)}]", "run.baselines=[]",
               f"run.ablations=[{', '.join(self.ablations)}]", *self.settings]
        if self.domain:
            out.append(f"run.domain={self.domain}")
        if self.seed is not None:
            out.append(f"seed={self.seed}")
        return out


@dataclass
class Experiment:
    workdir: Path
    output: Path
    base: list[str]
    cells: list[Cell] = field(default_factory=list)


def _as_list(value: Any, name: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise ConfigError(f"{name} must be a list")
    return value


def load_experiment(path: str | Path) -> Experiment:
    """Parse and expand an experiment file (see the module docstring)."""
    path = Path(path)
    spec = read_yaml(path, "experiment file")
    unknown = set(spec) - {"workdir", "output", "base", "cells"}
    if unknown:
        raise ConfigError(f"{path}: unknown key(s) {', '.join(sorted(unknown))}")
    exp = Experiment(
        Path(spec.get("workdir", "runs/experiment")),
        Path(spec.get("output", "results/experiment.json")),
        [str(x) for x in _as_list(spec.get("base"), "base")],
    )
    for i, cell in enumerate(_as_list(spec.get("cells"), "cells")):
        where = f"{path}: cells[{i}]"
        allowed = {"group", "method", "tams", "seeds", "domains", "ablations", "set", "label"}
        if not isinstance(cell, dict) or set(cell) - allowed:
            raise ConfigError(f"{where}: a mapping with keys among {', '.join(sorted(allowed))}")
        domains = cell.get("domains")
        domains = (
            list(GENERATION_DOMAINS) if domains == "all" else _as_list(domains, f"{where}.domains") or [None]
        )
        for domain in domains:
            for seed in _as_list(cell.get("seeds"), f"{where}.seeds") or [None]:
                exp.cells.append(Cell(
                    group=str(cell.get("group", "main")), method=str(cell.get("method", "unigen")),
                    tams=tuple(_as_list(cell.get("tams"), f"{where}.tams") or ["minilm-l6"]), seed=seed,
                    domain=domain, ablations=tuple(_as_list(cell.get("ablations"), f"{where}.ablations")),
                    settings=tuple(str(x) for x in _as_list(cell.get("set"), f"{where}.set")),
                    label=str(cell.get("label", ""))))
    for cell in exp.cells:  # fail on a bad cell before hours of work, not after
        load_config(None, cell.overrides(exp.base))
    return exp


def record_key(rec: dict[str, Any]) -> str:
    return json.dumps([rec["group"], rec["label"], rec["method"], rec["domain"], rec["ablations"], rec["tam"],
                       rec["generator"], rec["seed"], rec["settings"]])


def run_experiment(exp: Experiment, *, progress: bool = True, log: Callable[[str], None] = print,
                   max_cells: int | None = None, wait: bool = False) -> list[dict[str, Any]]:
    """Run every unfinished cell in order; returns all records (also written to ``exp.output``).

    A cell that raises is logged and skipped so the rest of a long matrix still runs; the failures are
    raised together at the end as :class:`CellsFailed` (a rerun retries them: their stages resume). The
    work folder is locked for the whole matrix (``wait``: queue behind another process holding it).
    """
    with workdir_lock(exp.workdir, wait=wait):
        return _run_cells(exp, progress=progress, log=log, max_cells=max_cells)


def _run_cells(exp: Experiment, *, progress: bool, log: Callable[[str], None],
               max_cells: int | None) -> list[dict[str, Any]]:
    import traceback

    from unigen.pipeline import method_label, run_pipeline  # torch; loaded only to run cells

    records: list[dict[str, Any]] = json.loads(exp.output.read_text()) if exp.output.is_file() else []
    done = {record_key(r) for r in records}
    ran = 0
    failures: list[str] = []
    for n, cell in enumerate(exp.cells, 1):
        cfg = load_config(None, cell.overrides(exp.base))
        todo = [t for t in cell.tams if record_key(_record(cell, cfg, t, {})) not in done]
        if not todo:
            continue
        if max_cells is not None and ran >= max_cells:
            break
        ran += 1
        log(f"=== cell {n}/{len(exp.cells)}: {method_label(cfg)} seed {cfg.seed} tams {', '.join(todo)}")
        tic = time.perf_counter()
        cfg = load_config(None, [*cell.overrides(exp.base), f"run.tams=[{', '.join(todo)}]"])
        try:
            rows = run_pipeline(cfg, exp.workdir, progress=progress, log=log)
        except Exception as exc:  # one broken cell must not stop the matrix
            log(traceback.format_exc())
            failures.append(f"cell {n} ({method_label(cfg)} seed {cfg.seed}): {type(exc).__name__}: {exc}")
            continue
        run = json.loads((exp.workdir / "run.json").read_text())
        stages = run["stages"]
        for tam, metrics in zip(todo, rows.values()):
            rec = _record(cell, cfg, tam, metrics)
            rec["seconds"] = round(time.perf_counter() - tic, 1)
            rec["timings"] = run.get("timings", {})  # seconds per stage in this cell (cached stages: ~0)
            rec["model"] = stages[f"model {tam}"]
            rec["train_rows"] = _train_rows(Path(rec["model"]).parent)
            records.append(rec)
            done.add(record_key(rec))
        atomic_write_json(exp.output, records)
    if failures:
        raise CellsFailed(failures, records)
    return records


def _train_rows(train_dir: Path) -> int | None:
    manifest = train_dir / "manifest.json"
    return json.loads(manifest.read_text()).get("counts", {}).get("rows") if manifest.is_file() else None


def _record(cell: Cell, cfg: Any, tam: str, metrics: dict[str, Any]) -> dict[str, Any]:
    return {"group": cell.group, "label": cell.label, "method": cell.method, "domain": cell.domain,
            "ablations": list(cell.ablations), "settings": list(cell.settings), "tam": tam,
            "generator": cfg.generator, "seed": cfg.seed,
            "accuracy": {k: v["accuracy"] for k, v in metrics.items() if isinstance(v, dict)},
            "n": {k: v["n"] for k, v in metrics.items() if isinstance(v, dict)},
            "average": metrics.get("average")}
