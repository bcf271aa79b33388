"""Tests for unigen.stages: seeds, fingerprints, atomic shards, stage folders and manifests."""

from __future__ import annotations

import dataclasses
import json

import pytest

from unigen.config import GenerateConfig, UniGenConfig
from unigen.seeds import derive_seed
from unigen.stages import (
    Stage,
    StageError,
    iter_stage_rows,
    read_jsonl,
    stage_dir,
    stage_fingerprint,
    write_jsonl_atomic,
)


def test_derive_seed_is_stable_and_distinct():
    assert derive_seed(42, "generate", 3) == derive_seed(42, "generate", 3)
    assert derive_seed(42, "generate", 3) == 5028846398961072897  # fixed across runs and machines
    assert len({derive_seed(42, "generate", i) for i in range(100)}) == 100
    assert derive_seed(42, "generate", 3) != derive_seed(43, "generate", 3)
    assert 0 <= derive_seed("x") < 2 ** 63


def test_fingerprint_tracks_output_settings_only():
    g = GenerateConfig()
    base = stage_fingerprint("generate", 1, g)
    assert stage_fingerprint("generate", 1, dataclasses.replace(g, batch_size=7)) == base  # output-neutral
    assert stage_fingerprint("generate", 1, dataclasses.replace(g, top_k=5)) != base
    assert stage_fingerprint("generate", 2, g) != base  # STAGE_VERSION
    assert stage_fingerprint("generate", 1, g, upstream={"x": "abc"}) != base
    assert len(base) == 12


def test_atomic_jsonl_roundtrip_and_failed_write(tmp_path):
    path = tmp_path / "a.jsonl"
    assert write_jsonl_atomic(path, [{"a": 1, "t": "é\n\"q\""}, {"a": 2}]) == 2
    assert list(read_jsonl(path)) == [{"a": 1, "t": "é\n\"q\""}, {"a": 2}]
    with pytest.raises(TypeError):
        write_jsonl_atomic(tmp_path / "b.jsonl", [{"a": object()}])
    assert not (tmp_path / "b.jsonl").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.jsonl"]  # no temporary left behind


def test_stage_lifecycle(tmp_path):
    out = stage_dir(tmp_path, "01_generate", "abc")
    st = Stage.open(out, stage="generate", fingerprint="abc", config={"k": 1}, seed=42)
    assert st.manifest["status"] == "running" and not st.complete
    assert st.manifest["config"] == {"k": 1} and st.manifest["seed"] == 42
    st.write_shard(1, [{"id": "c"}], {"n": 1})
    st.write_shard(0, [{"id": "a"}, {"id": "b"}], {"n": 2})
    (st.shard_dir / ".tmp-shard-00002.jsonl.xyz").write_text('{"id": "partial"')  # a kill mid-write
    assert st.shard_indices() == [0, 1]
    assert [r["id"] for r in st.iter_rows()] == ["a", "b", "c"]
    assert st.read_stats(0) == {"n": 2} and st.read_stats(5) == {}
    with pytest.raises(StageError, match="not complete"):
        Stage.load(out)
    again = Stage.open(out, stage="generate", fingerprint="abc", config={"k": 1})
    assert not list(again.shard_dir.glob(".tmp-*")) and again.manifest["resumes"] == 1
    again.finish({"rows": 3})
    loaded = Stage.load(out, "generate")
    assert loaded.complete and loaded.manifest["counts"] == {"rows": 3}
    assert [r["id"] for r in iter_stage_rows(out)] == ["a", "b", "c"]
    assert json.loads((out / "manifest.json").read_text())["versions"]["torch"]


def test_stage_refuses_foreign_folders(tmp_path):
    Stage.open(tmp_path / "s", stage="generate", fingerprint="abc", config={})
    with pytest.raises(StageError, match="settings"):
        Stage.open(tmp_path / "s", stage="generate", fingerprint="def", config={})
    with pytest.raises(StageError, match="expected"):
        Stage.load(tmp_path / "s", "relabel", require_complete=False)
    with pytest.raises(StageError, match="not a stage folder"):
        Stage.load(tmp_path / "nothing")


def test_root_config_fields_used_by_stages():
    cfg = UniGenConfig()
    assert cfg.labels == ("negative", "positive") and isinstance(cfg.seed, int)
