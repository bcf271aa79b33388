"""The Ray executor (``run.executor = ray``): same rows as the local executor, resume after a killed driver,
the ledger's speculative de-duplication, errors and settings.

The tests that run Ray share one local instance with 2 CPUs (the ``ray_cluster`` fixture); the rest need
no Ray. CI installs Ray through the ``dev`` extra; without it those tests are skipped (and say so).
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from unigen.cli import main
from unigen.config import load_config
from unigen.errors import ConfigError
from unigen.stages import Stage
from unigen.synth.common import generate_fingerprint, relabel_fingerprint
from unigen.synth.generate_stage import (
    generate_into,
    generate_stage,
    plan_generation,
    prompt_stems,
    sample_shard,
)
from unigen.synth.generation import KeySet, text_key
from unigen.synth.ray_executor import GenerateWorker, KeyLedger, check_executor, pool_size, ray_module
from unigen.synth.relabel_stage import relabel_stage
from unigen.synth.stage import synthesize

from capabilities import missing
from synth_fakes import FakeScorer, PoolSampler

TESTS = Path(__file__).resolve().parents[1]
BASE = ("generate.samples_per_label=24", "generate.shard_size=4", "run.actors=2")


def cfg_for(*overrides: str):
    return load_config(None, [*BASE, *overrides])


def on_ray(cfg):
    return dataclasses.replace(cfg, run=dataclasses.replace(cfg.run, executor="ray"))


def rows_and_stats(path):
    st = Stage.load(path)
    stats = [{k: v for k, v in st.read_stats(i).items() if k != "seconds"} for i in st.shard_indices()]
    return list(st.iter_rows()), stats


@pytest.fixture(scope="session")
def ray_cluster():
    """One local Ray instance (2 CPUs) for the session; its workers import the test fakes."""
    try:
        ray = ray_module()
    except ConfigError:
        missing("Ray is not installed (pip install 'unigen-sentiment[ray]'): Ray executor tests skipped")
    os.environ.pop("RAY_ADDRESS", None)
    paths = [str(TESTS), *[p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]]
    os.environ["PYTHONPATH"] = os.pathsep.join(paths)  # the workers inherit it: synth_fakes imports
    import logging

    ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.WARNING, log_to_driver=False)
    yield ray
    ray.shutdown()


# ---------------------------------------------------------------- without Ray

def test_executor_is_not_part_of_the_fingerprint():
    cfg = cfg_for()
    assert generate_fingerprint(cfg) == generate_fingerprint(on_ray(cfg))
    assert relabel_fingerprint(cfg, "abc") == relabel_fingerprint(on_ray(cfg), "abc")


@pytest.mark.parametrize("override, match", [
    ("run.executor=spark", "run.executor must be one of local, ray"),
    ("run.actors=-1", "run.actors"),
    ("run.cpus_per_actor=0", "run.cpus_per_actor"),
])
def test_bad_settings(override, match):
    with pytest.raises(ConfigError, match=match):
        cfg_for(override)


def test_until_kept_is_refused_on_ray(tmp_path):
    cfg = cfg_for("run.executor=ray", "relabel.until_kept=true")
    with pytest.raises(ConfigError, match="until_kept .* run.executor=local"):
        check_executor(cfg)
    with pytest.raises(ConfigError, match="run.executor=local"):
        synthesize(cfg, tmp_path, progress=False)


def test_missing_ray_is_one_line(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    with pytest.raises(ConfigError, match=r"pip install 'unigen-sentiment\[ray\]'"):
        ray_module()
    assert main(["generate", "--executor", "ray", "--output", str(tmp_path / "g"), "--quiet",
                 "--set", "generate.samples_per_label=4"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("unigen: error: run.executor=ray needs Ray Data") and "\n" not in err


def test_pool_size():
    cfg = cfg_for("run.actors=0")
    assert pool_size(cfg, {"CPU": 16.0}, 100) == 16
    assert pool_size(cfg, {"CPU": 16.0}, 3) == 3  # never more actors than shards
    cpus4 = cfg_for("run.actors=0", "run.cpus_per_actor=4")
    assert pool_size(cpus4, {"CPU": 18.0}, 100) == 4
    gpus = cfg_for("run.actors=0", "run.gpus_per_actor=1")
    assert pool_size(gpus, {"CPU": 64.0, "GPU": 8.0}, 100) == 8
    assert pool_size(gpus, {"CPU": 64.0}, 100) == 1  # no GPU: one actor (pending until one appears)
    assert pool_size(cfg_for("run.actors=5"), {"CPU": 2.0}, 100) == 5


def test_ledger_accepts_a_speculative_shard_only_without_later_collisions():
    """The ledger's rule without Ray: a shard generated against a snapshot is committed iff none of its
    texts was committed after the snapshot; then its rows are the local executor's (checked on Ray
    below)."""
    ledger = KeyLedger([0])  # shard 0 finished before this run
    ledger.preload(np.array([1, 2], dtype=np.uint64))
    assert ledger.since(0) == (1, [ledger.log[0]]) and ledger.prefix == 1
    with pytest.raises(RuntimeError, match="shard 2 committed before shard 1"):
        ledger.commit(2, np.array([9]), 1)
    assert ledger.commit(1, np.array([3, 4]), 1)  # snapshot after shard 0: fine
    assert not ledger.commit(2, np.array([5, 3]), 1)  # 3 came from shard 1, after its snapshot: redo
    assert ledger.prefix == 2 and len(ledger.log) == 2  # nothing committed
    assert ledger.commit(2, np.array([5, 6]), 2) and ledger.prefix == 3
    assert ledger.commit(3, np.array([], dtype=np.uint64), 0)  # an empty shard never collides


def test_worker_generates_against_its_snapshot(monkeypatch):
    """A worker's rows skip the texts committed before its snapshot, as the local loop's do."""
    cfg = cfg_for("generate.samples_per_label=8")
    specs = plan_generation(cfg)
    seen = KeySet()
    want = [sample_shard(PoolSampler(), s, cfg, seen, prompt_stems(cfg))[0] for s in specs[:2]]
    ledger = KeyLedger([])

    class Handle:  # the actor handle's .remote calls, in-process
        def __getattr__(self, name):
            return SimpleNamespace(remote=getattr(ledger, name))

    monkeypatch.setitem(sys.modules, "ray", SimpleNamespace(get=lambda x: x))
    worker = GenerateWorker(cfg, specs, prompt_stems(cfg), sample_shard, Handle(), sampler=PoolSampler())
    first = json.loads(worker.shard(0))
    assert first["rows"] == want[0] and first["pos"] == 0
    assert ledger.commit(0, np.array([text_key(r["text"]) for r in first["rows"]], dtype=np.uint64), 0)
    second = json.loads(worker.shard(1))
    assert second["rows"] == want[1] and second["pos"] == 1


# ---------------------------------------------------------------- on a local Ray instance

def test_ray_generation_equals_local_row_for_row(tmp_path, ray_cluster):
    """De-duplication across shards on parallel workers (texts shared by every label, shards overlapping
    in time) gives the local executor's rows and shard statistics."""
    cfg = cfg_for()
    local = generate_stage(cfg, tmp_path / "a", progress=False, sampler=PoolSampler())
    remote = generate_stage(on_ray(cfg), tmp_path / "b", progress=False, sampler=PoolSampler(pause=0.05))
    assert local.relative_to(tmp_path / "a") == remote.relative_to(tmp_path / "b")  # same fingerprint
    assert rows_and_stats(remote) == rows_and_stats(local)
    executor = Stage.load(remote).manifest["executor"]
    assert executor["name"] == "ray" and executor["actors"] == 2 and executor["shards"] == 12
    assert executor["redone_shards"] >= 1  # the pool's texts collide across overlapping shards
    assert Stage.load(local).manifest["counts"]["rejected"]["duplicate"] > 0


def test_ray_with_a_tiny_model_via_the_cli(tmp_path, ray_cluster, saved_llama, capsys):
    """The model is loaded by the actors (transformers backend); generate and relabel (centred verbalizer,
    its offset computed on a Ray actor) equal the local executor's folders."""
    overrides = [*BASE, "generate.samples_per_label=8", "generate.lengths=[]", "generate.max_new_tokens=6",
                 f"generator={saved_llama}", "generate.backend=transformers", "scoring.backend=transformers",
                 "relabel.auto_sample=8", "relabel.centre_scores=true"]
    cfg = load_config(None, overrides)
    gen_local = generate_stage(cfg, tmp_path / "a", progress=False)
    rel_local = relabel_stage(cfg, tmp_path / "a", progress=False)
    settings = ["--workdir", str(tmp_path / "b"), "--quiet", *[x for o in overrides for x in ("--set", o)]]
    assert main(["generate", "--executor", "ray", *settings]) == 0
    assert main(["relabel", "--executor", "ray", *settings]) == 0
    capsys.readouterr()
    gen_ray = tmp_path / "b" / gen_local.relative_to(tmp_path / "a")
    rel_ray = tmp_path / "b" / rel_local.relative_to(tmp_path / "a")
    assert rows_and_stats(gen_ray) == rows_and_stats(gen_local)
    assert list(Stage.load(rel_ray).iter_rows()) == list(Stage.load(rel_local).iter_rows())
    m = Stage.load(rel_ray).manifest
    assert m["rule_choice"] == Stage.load(rel_local).manifest["rule_choice"]
    assert m["executor"]["name"] == "ray"


def test_ray_relabels_with_a_labeler_ensemble(tmp_path, ray_cluster, saved_llama):
    """The ensemble travels to the actors unloaded (a fake generator scorer, the tiny labeler loaded there)
    and gives the local executor's rows."""
    cfg = cfg_for("generate.samples_per_label=8", f"relabel.labelers=[{saved_llama}]",
                  "scoring.backend=transformers")
    gen = generate_stage(cfg, tmp_path, progress=False, sampler=PoolSampler())
    local = relabel_stage(cfg, tmp_path / "a", gen, progress=False, scorer=FakeScorer(cfg.labels))
    remote = relabel_stage(on_ray(cfg), tmp_path / "b", gen, progress=False, scorer=FakeScorer(cfg.labels))
    rows = list(Stage.load(remote).iter_rows())
    assert rows == list(Stage.load(local).iter_rows()) and str(saved_llama) in rows[0]["labeler_scores"]
    assert Stage.load(remote).manifest["executor"]["name"] == "ray"


DRIVER = """
import sys
from unigen.config import load_config
from unigen.synth.generate_stage import generate_into
from capabilities import missing
from synth_fakes import PoolSampler
cfg = load_config(None, sys.argv[2:])
generate_into(cfg, sys.argv[1], progress=False, sampler=PoolSampler(pause=0.4))
"""


def test_killed_driver_resumes_to_the_same_rows(tmp_path, ray_cluster):
    """A driver killed with SIGKILL mid-run leaves a prefix of whole shards; the next run (Ray again)
    finishes with exactly the rows of an uninterrupted local run."""
    overrides = [*BASE, "generate.samples_per_label=32", "run.executor=ray"]
    cfg = load_config(None, overrides)
    local = load_config(None, [*overrides, "run.executor=local"])
    reference = rows_and_stats(generate_into(local, tmp_path / "a", progress=False, sampler=PoolSampler()))
    out = tmp_path / "b"
    env = {**os.environ, "RAY_ADDRESS": ray_cluster.get_runtime_context().gcs_address}
    proc = subprocess.Popen([sys.executable, "-c", DRIVER, str(out), *overrides], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    deadline = time.time() + 600  # generous: a loaded 2-core CI machine starts Ray workers slowly
    try:
        while len(list((out / "shards").glob("shard-*.jsonl"))) < 3:
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            assert time.time() < deadline, "the driver wrote fewer than 3 shards in 600 s"
            time.sleep(0.1)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    done = Stage(out).shard_indices()
    assert done == list(range(len(done))) and 3 <= len(done) < 16  # killed mid-run, a prefix on disk
    resumed = generate_into(cfg, out, progress=False, sampler=PoolSampler())
    assert rows_and_stats(resumed) == reference
    assert Stage.load(resumed).manifest["resumes"] == 1
