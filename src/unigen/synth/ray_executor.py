"""``run.executor = ray``: the generation and relabel shards on Ray actors across a cluster.

Ray is an optional extra (``pip install 'unigen-sentiment[ray]'``); the driver connects to ``RAY_ADDRESS``
when it is set and otherwise starts a local instance (:func:`init_ray`). A pool of actors
(:func:`pool_size`: ``run.actors`` actors of ``run.cpus_per_actor`` CPUs and ``run.gpus_per_actor`` GPUs),
each loading the generator once, works through the shards that are not finished yet, and the driver writes
every shard it gets back into the same fingerprinted stage folder as the local executor (the executor is
not part of the fingerprint), so the folder, its resume and everything downstream are unchanged. A worker
that dies is restarted by Ray and its shard run again; a killed driver resumes from the finished shards.

Relabeling: shards are independent, so the relabel stage is a Ray Data dataset of shard indices mapped by
an actor pool (``ActorPoolStrategy``), written in any order. Its actors read the generation shards from
the stage folder: the workdir must be on storage every node mounts at the same path (generation ships
its rows back to the driver and needs none). The ``auto`` rule / centring offset is computed on a Ray
actor too (:class:`RemoteScorer`), so the driver never loads the generator.

Generation: rows are seeded per shard and attempt, so a shard's rows do not depend on the worker, with one
exception: de-duplication (``generate.dedup``) rejects texts of *earlier* shards, which the local loop
knows because it runs the shards in order. Ray Data's static dataflow cannot feed a shard back for
another try, and workers that wait inside a Ray Data task for earlier shards can deadlock (Ray Data does
not promise to start tasks in input order), so generation runs on a pool of Ray actors scheduled by the
driver, which keeps the local contract with a ledger actor (:class:`KeyLedger`) of the 64-bit text keys
of the committed shards:

1. a worker syncs the keys committed so far (all from shards before its own: shards commit in index
   order) and generates its shard *speculatively* against them, never waiting for other shards;
2. the driver commits results in index order: the ledger checks that none of the shard's texts was
   committed after the worker's snapshot. None was: the rows are exactly the local executor's (a
   speculative run can only differ from the sequential one by accepting such a text). One was: the shard
   is sent to the next free actor again, which now sees every earlier shard: the local run by
   construction.

The driver holds at most ``2 * actors`` uncommitted shards and writes shards in index order, so the
finished shards on disk are always a prefix and a restarted run (either executor) continues from them.
Redone shards are counted in the manifest (``executor.redone_shards``); they cost time, never rows.
``relabel.until_kept`` decides every shard from the relabeled shards before it, which is sequential by
design: it runs on the local executor only.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from unigen.config import UniGenConfig
from unigen.errors import ConfigError, DataError, UniGenError
from unigen.synth.generation import KeySet, text_key

# ---------------------------------------------------------------- Ray itself

def ray_module() -> Any:
    """The ``ray`` package with Ray Data, or a one-line error naming the extra to install."""
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise ConfigError("run.executor=ray needs Ray Data: pip install 'unigen-sentiment[ray]' "
                          "(or 'ray[data]')") from None
    return ray


def check_executor(cfg: UniGenConfig) -> None:
    """Refuse what the Ray executor cannot run (with one line naming the settings)."""
    if cfg.run.executor == "ray" and cfg.relabel.until_kept:
        raise ConfigError("relabel.until_kept decides each shard from the relabeled shards before it "
                          "(sequential): use run.executor=local, or relabel.until_kept=false")


def init_ray(quiet: bool = True) -> Any:
    """Connect to ``RAY_ADDRESS`` when set, else start a local Ray instance (once per process)."""
    ray = ray_module()
    if not ray.is_initialized():
        options: dict[str, Any] = {"logging_level": logging.WARNING, "log_to_driver": not quiet}
        if not os.environ.get("RAY_ADDRESS"):
            options["include_dashboard"] = False
        ray.init(**options)
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False  # the stage's own bar counts rows
    ctx.print_on_execution_start = False
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    return ray


def pool_size(cfg: UniGenConfig, cluster: dict[str, float], shards: int) -> int:
    """``run.actors``, or (0) as many actors as the cluster's GPUs (``gpus_per_actor > 0``) or CPUs allow;
    never more than there are shards, never fewer than one."""
    r = cfg.run
    if r.actors:
        n = r.actors
    elif r.gpus_per_actor > 0:
        n = int(cluster.get("GPU", 0) // r.gpus_per_actor)
    else:
        n = int(cluster.get("CPU", 1) // r.cpus_per_actor)
    return max(1, min(n, shards))


def _unwrap(exc: BaseException) -> BaseException:
    """The UniGenError a worker raised, if there is one under Ray's wrappers, else ``exc``."""
    seen: set[int] = set()
    todo: list[Any] = [exc]
    while todo:
        e = todo.pop()
        if not isinstance(e, BaseException) or id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, UniGenError) and type(e).__module__.startswith("unigen"):
            return e
        todo += [getattr(e, "cause", None), e.__cause__, e.__context__]
    return exc


def _map_shards(ray: Any, worker: type, indices: list[int], cfg: UniGenConfig,
                kwargs: dict[str, Any]) -> tuple[Any, int]:
    """The lazy Ray Data pipeline: one block and one task per shard index, mapped by the actor pool."""
    n = pool_size(cfg, ray.cluster_resources(), len(indices))
    ds = ray.data.from_items([{"index": i} for i in indices], override_num_blocks=len(indices))
    ds = ds.map_batches(
        worker, batch_size=1, fn_constructor_kwargs=kwargs,
        compute=ray.data.ActorPoolStrategy(size=n, max_tasks_in_flight_per_actor=2),
        num_cpus=cfg.run.cpus_per_actor, num_gpus=cfg.run.gpus_per_actor or None,
    )
    return ds, n


def _iter_results(ds: Any) -> Any:
    """``(index, payload dict)`` of every finished shard; worker errors come out as their UniGenError."""
    try:
        for row in ds.iter_rows():
            yield int(row["index"]), json.loads(row["payload"])
    except Exception as exc:  # noqa: BLE001 - Ray wraps the worker's exception
        err = _unwrap(exc)
        if err is exc:
            raise
        raise err from None


def _payload(rows: list[dict[str, Any]], stats: dict[str, Any], **extra: Any) -> str:
    return json.dumps({"rows": rows, "stats": stats, **extra}, ensure_ascii=False)


def _keys(rows: list[dict[str, Any]]) -> np.ndarray:
    return np.array([text_key(r["text"]) for r in rows], dtype=np.uint64)


def _batch(results: list[tuple[int, str]]) -> dict[str, np.ndarray]:
    return {"index": np.array([i for i, _ in results], dtype=np.int64),
            "payload": np.array([p for _, p in results], dtype=object)}


# ---------------------------------------------------------------- generation: the ledger

class KeyLedger:
    """De-duplication keys of the committed generation shards, committed in index order (a Ray actor).

    ``done``: the shards finished before this run (their keys come with :meth:`preload`). The log holds
    one key array per committed shard; a worker's snapshot is a log position.
    """

    def __init__(self, done: list[int]):
        self.committed = set(done)
        self.prefix = 0
        self._advance()
        self.log: list[np.ndarray] = []

    def _advance(self) -> None:
        while self.prefix in self.committed:
            self.prefix += 1

    def preload(self, keys: np.ndarray) -> None:
        self.log.append(np.asarray(keys, dtype=np.uint64))

    def since(self, pos: int) -> tuple[int, list[np.ndarray]]:
        """``(new position, key arrays committed since pos)``."""
        return len(self.log), self.log[pos:]

    def commit(self, index: int, keys: np.ndarray, pos: int) -> bool:
        """Commit shard ``index`` (the next one in order), generated against the log up to ``pos``; False
        (nothing committed) when one of its keys was committed after ``pos``: the shard must be redone."""
        if index != self.prefix:
            raise RuntimeError(f"shard {index} committed before shard {self.prefix}")
        keys = np.asarray(keys, dtype=np.uint64)
        if pos < len(self.log) and len(keys) and np.isin(keys, np.concatenate(self.log[pos:])).any():
            return False
        self.committed.add(index)
        self._advance()
        self.log.append(keys)
        return True


class _Overlay:
    """The keys a shard rejects: the worker's copy of the ledger plus the shard's own accepted texts
    (which must not enter that copy before they are committed)."""

    def __init__(self, base: KeySet):
        self.base, self.own = base, set()

    def __contains__(self, key: int) -> bool:
        return key in self.own or key in self.base

    def add(self, key: int) -> None:
        self.own.add(key)


# ---------------------------------------------------------------- generation: the worker

class GenerateWorker:
    """One actor of the generation pool: loads the sampler once and generates shards by index.

    ``specs``: the shards it may be given; ``sample``:
    :func:`unigen.synth.generate_stage.sample_shard` (passed
    in, not imported: the stage runner imports this module). ``ledger``: the :class:`KeyLedger` handle, None
    with ``generate.dedup`` off (shards are then independent). ``sampler`` / ``lm``: as for
    :func:`unigen.synth.generate_stage.generate_into` (tests; shipped to the actor by pickling).
    """

    def __init__(self, cfg: UniGenConfig, specs: list[Any], stems: list[str], sample: Callable[..., Any],
                 ledger: Any = None, sampler: Any = None, lm: Any = None):
        self.cfg, self.ledger, self._sampler, self.lm = cfg, ledger, sampler, lm
        self.specs = {s.index: s for s in specs}
        self.stems, self.sample = stems, sample
        self.seen = KeySet()
        self.pos = 0

    def sampler(self) -> Any:
        if self._sampler is None:  # first shard, not __init__: a missing model is a task error (one line)
            from unigen.synth.backends import make_sampler

            self._sampler = make_sampler(self.cfg, self.lm)
        return self._sampler

    def _sync(self) -> None:
        """Add the keys committed since the last look (all of shards before any uncommitted one)."""
        import ray

        self.pos, fresh = ray.get(self.ledger.since.remote(self.pos))
        for keys in fresh:
            for k in keys.tolist():
                self.seen.add(k)

    def shard(self, index: int) -> str:
        """The payload of shard ``index``: rows, stats and the ledger position they were generated against
        (the driver's commit checks that no key committed after it is among the rows)."""
        seen = None
        if self.ledger is not None:
            self._sync()
            seen = _Overlay(self.seen)
        rows, stats = self.sample(self.sampler(), self.specs[index], self.cfg, seen, self.stems)
        return _payload(rows, stats, pos=self.pos)


def ray_generate(cfg: UniGenConfig, stage: Any, todo: list[Any], bar: Any, *, stems: list[str],
                 sample: Callable[..., Any], sampler: Any = None, lm: Any = None) -> dict[str, Any]:
    """Generate the shards ``todo`` (ShardSpecs, ascending) on a pool of Ray actors with ``sample`` (the
    stage's shard function), commit them in index order (redoing a shard whose speculation failed) and
    write them into ``stage``; returns the manifest's ``executor`` record."""
    from unigen.synth.datacards import Acceptance

    ray = init_ray()
    handle = None
    if cfg.generate.dedup:
        handle = ray.remote(num_cpus=0, max_restarts=0)(KeyLedger).remote(stage.shard_indices())
        for i in stage.shard_indices():
            handle.preload.remote(_keys(stage.read_shard(i)))
    n = pool_size(cfg, ray.cluster_resources(), len(todo))
    remote = ray.remote(num_cpus=cfg.run.cpus_per_actor, num_gpus=cfg.run.gpus_per_actor,
                        max_restarts=3, max_task_retries=3)(GenerateWorker)
    actors = [remote.remote(cfg, todo, stems, sample, handle, sampler, lm) for _ in range(n)]
    order = [s.index for s in todo]
    window = 2 * n  # shards dispatched or finished but not yet written: bounds the driver's memory
    t0 = time.time()
    fresh, redo, idle = iter(order), [], list(actors)
    inflight: dict[Any, tuple[Any, int]] = {}
    results: dict[int, dict[str, Any]] = {}
    written = redone = rows = dispatched = 0
    first: tuple[float, int] | None = None  # (seconds, rows) when the first shard came back
    counter = Acceptance(bar)
    try:
        while written < len(order):
            while idle and (redo or dispatched - written < window and dispatched < len(order)):
                actor = idle.pop()
                if redo:
                    i = redo.pop()
                else:
                    i, dispatched = next(fresh), dispatched + 1
                inflight[actor.shard.remote(i)] = (actor, i)
            ready, _ = ray.wait(list(inflight), num_returns=1)
            actor, i = inflight.pop(ready[0])
            idle.append(actor)
            results[i] = json.loads(_get(ray, ready[0]))
            first = first or (time.time() - t0, len(results[i]["rows"]))
            while written < len(order) and order[written] in results:  # commit in index order
                i = order[written]
                data = results.pop(i)
                ok = handle is None or ray.get(handle.commit.remote(i, _keys(data["rows"]), data["pos"]))
                if not ok:  # an earlier shard took one of its texts meanwhile: generate it again
                    redo.append(i)
                    redone += 1
                    break
                stage.write_shard(i, data["rows"], data["stats"])
                written, rows = written + 1, rows + len(data["rows"])
                counter(len(data["rows"]), data["stats"]["attempts"])
    finally:
        for actor in actors:
            ray.kill(actor)
        if handle is not None:
            ray.kill(handle)
    seconds = time.time() - t0
    return {"name": "ray", "actors": n, "cpus_per_actor": cfg.run.cpus_per_actor,
            "gpus_per_actor": cfg.run.gpus_per_actor, "shards": written, "redone_shards": redone,
            **_rates(rows, seconds, first)}


def _rates(rows: int, seconds: float, first: tuple[float, int] | None) -> dict[str, Any]:
    """Throughput over the whole call and after the first shard came back (the pool's start-up, model
    loads included, is ``startup_s``)."""
    out: dict[str, Any] = {"seconds": round(seconds, 2),
                           "rows_per_s": round(rows / seconds, 2) if seconds else None}
    if first is not None:
        out["startup_s"] = round(first[0], 2)
        steady = seconds - first[0]
        out["steady_rows_per_s"] = round((rows - first[1]) / steady, 2) if steady > 0 else None
    return out


def _get(ray: Any, ref: Any) -> Any:
    """``ray.get`` with a worker's UniGenError raised as itself (one line in the CLI)."""
    try:
        return ray.get(ref)
    except Exception as exc:  # noqa: BLE001 - Ray wraps the worker's exception
        err = _unwrap(exc)
        if err is exc:
            raise
        raise err from None


# ---------------------------------------------------------------- relabeling

class _Captured:
    """Stands in for the relabel stage folder inside a worker: keeps what would have been written."""

    def write_shard(self, index: int, rows: list[dict[str, Any]], stats: dict[str, Any]) -> None:
        self.rows, self.stats = rows, stats


class RelabelWorker:
    """One actor of the relabel pool: loads the scorer once and relabels generation shards by index with
    ``relabel`` (:func:`unigen.synth.relabel_stage.relabel_shard`, passed in like the generation worker's)."""

    def __init__(self, cfg: UniGenConfig, gen_path: str, choice: dict[str, Any], relabel: Callable[..., Any],
                 scorer: Any = None, lm: Any = None):
        self.cfg, self.gen_path, self.choice, self._scorer, self.lm = cfg, gen_path, choice, scorer, lm
        self.relabel = relabel

    def scorer(self) -> Any:
        if self._scorer is None and self.choice["rule"] != "none":
            from unigen.synth.backends import make_relabel_scorer

            self._scorer = make_relabel_scorer(self.cfg, self.lm)
        return self._scorer

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return _batch([(int(i), self.shard(int(i))) for i in batch["index"]])

    def shard(self, index: int) -> str:
        from unigen.stages import Stage

        gen = Stage(self.gen_path)
        if not gen.has_shard(index):
            raise DataError(f"{gen.shard_path(index)} is not visible on this Ray node: the relabel actors "
                            "read the generation shards, so put the workdir on storage every node mounts "
                            "at the same path")
        out = _Captured()
        self.relabel(out, gen, index, self.scorer(), self.choice, self.cfg)
        return _payload(out.rows, out.stats)


class RemoteScorer:
    """A scorer that runs on a Ray actor, built on first use (the ``auto`` rule choice of the relabel
    stage), so the driver never loads the generator; :meth:`close` frees the actor for the pool."""

    def __init__(self, cfg: UniGenConfig, scorer: Any = None, lm: Any = None):
        self.cfg, self.scorer, self.lm = cfg, scorer, lm
        self.actor: Any = None

    def scores(self, texts: Any, **kwargs: Any) -> np.ndarray:
        ray = init_ray()
        if self.actor is None:
            host = ray.remote(num_cpus=self.cfg.run.cpus_per_actor, num_gpus=self.cfg.run.gpus_per_actor)(
                _ScorerHost)
            self.actor = host.remote(self.cfg, self.scorer, self.lm)
        return _get(ray, self.actor.scores.remote(list(texts), **kwargs))

    def close(self) -> None:
        if self.actor is not None:
            ray_module().kill(self.actor)
            self.actor = None


class _ScorerHost:
    def __init__(self, cfg: UniGenConfig, scorer: Any, lm: Any):
        self.cfg, self.scorer, self.lm = cfg, scorer, lm

    def scores(self, texts: list[str], **kwargs: Any) -> np.ndarray:
        if self.scorer is None:
            from unigen.synth.backends import make_relabel_scorer

            self.scorer = make_relabel_scorer(self.cfg, self.lm)
        return self.scorer.scores(texts, **kwargs)


def ray_relabel(cfg: UniGenConfig, stage: Any, gen: Any, todo: list[int], choice: dict[str, Any], bar: Any,
                *, relabel: Callable[..., Any], scorer: Any = None, lm: Any = None) -> dict[str, Any]:
    """Relabel the generation shards ``todo`` on Ray with ``relabel`` (the stage's shard function) and write
    them into ``stage`` (any order); returns the manifest's ``executor`` record."""
    ray = init_ray()
    t0 = time.time()
    written = kept = rows = 0
    first: tuple[float, int] | None = None
    ds, actors = _map_shards(ray, RelabelWorker, todo, cfg, {
        "cfg": cfg, "gen_path": str(Path(gen.path).resolve()), "choice": choice, "relabel": relabel,
        "scorer": scorer, "lm": lm})
    for index, data in _iter_results(ds):
        stage.write_shard(index, data["rows"], data["stats"])
        first = first or (time.time() - t0, len(data["rows"]))
        written, rows, kept = written + 1, rows + len(data["rows"]), kept + data["stats"]["kept"]
        bar.update(len(data["rows"]))
        bar.set_postfix(kept=f"{100 * kept / max(rows, 1):.1f}%", refresh=False)
    return {"name": "ray", "actors": actors, "cpus_per_actor": cfg.run.cpus_per_actor,
            "gpus_per_actor": cfg.run.gpus_per_actor, "shards": written,
            **_rates(rows, time.time() - t0, first)}
