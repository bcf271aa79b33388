"""Tests for unigen.stages: seeds, fingerprints, atomic shards, stage folders and manifests."""

from __future__ import annotations

import dataclasses
import json

import pytest

from unigen.config import GenerateConfig, UniGenConfig
from unigen.files import read_jsonl, write_jsonl_atomic
from unigen.seeds import derive_seed
from unigen.stages import Stage, StageError, iter_stage_rows, stage_dir, stage_fingerprint


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


# ---------------------------------------------------------------- sha256 of finished folders

def finished_stage(tmp_path):
    st = Stage.open(tmp_path / "s", stage="generate", fingerprint="abc", config={})
    st.write_shard(0, [{"id": "a"}, {"id": "b"}], {"n": 2})
    st.write_shard(1, [{"id": "c"}], {"n": 1})
    (st.path / "datacard.md").write_text("a card, re-rendered later")
    st.finish({"rows": 3})
    return st


def test_finish_records_the_sha256_of_every_output(tmp_path):
    import hashlib

    st = finished_stage(tmp_path)
    recorded = st.manifest["sha256"]
    assert sorted(recorded) == ["shards/shard-00000.jsonl", "shards/shard-00000.stats.json",
                                "shards/shard-00001.jsonl", "shards/shard-00001.stats.json"]
    assert recorded["shards/shard-00001.jsonl"] == hashlib.sha256(st.shard_path(1).read_bytes()).hexdigest()
    (st.path / "datacard.md").write_text("re-rendered")  # cards may change after the stage finished
    assert st.problems() == [] and Stage.load(st.path).complete


@pytest.mark.parametrize("damage", ["truncate", "edit", "delete", "extra shard"])
def test_a_damaged_finished_folder_is_reported_and_recomputed(tmp_path, capsys, damage):
    st = finished_stage(tmp_path)
    shard = st.shard_path(0)
    if damage == "truncate":
        shard.write_bytes(shard.read_bytes()[:5])
    elif damage == "edit":
        shard.write_text(shard.read_text().replace('"a"', '"z"'))
    elif damage == "delete":
        shard.unlink()
    else:
        st.shard_path(7).write_text('{"id": "intruder"}\n')
    with pytest.raises(StageError, match="run its generate stage again") as info:
        Stage.load(st.path)  # a downstream reader never uses it
    assert "\n" not in str(info.value)
    again = Stage.open(st.path, stage="generate", fingerprint="abc", config={})
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("unigen: warning: ") and "recomputing the generate" in err
    assert ("shard-00007" if damage == "extra shard" else "shard-00000") in err
    assert not again.complete and again.shard_indices() == [] and again.manifest["recomputed"]["reason"]
    assert not (again.path / "datacard.md").exists() and again.manifest["resumes"] == 1


def test_folders_finished_before_sha256s_are_reused_unchecked(tmp_path, capsys):
    st = finished_stage(tmp_path)
    st.update(sha256=None)
    st.shard_path(0).write_text('{"id": "edited"}\n')
    assert Stage.open(st.path, stage="generate", fingerprint="abc", config={}).complete
    assert capsys.readouterr().err == ""


# ---------------------------------------------------------------- failing writes

def test_a_failing_write_leaves_the_old_file_and_no_temporary(tmp_path):
    import errno

    from unigen.errors import UniGenError, WriteError
    from unigen.files import atomic_write, atomic_write_json

    path = tmp_path / "m.json"
    atomic_write_json(path, {"old": True})

    def disk_full(f):
        f.write(b'{"new": tr')
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(WriteError, match="m.json: cannot be written .No space left on device.") as info:
        atomic_write(path, disk_full)
    assert isinstance(info.value, UniGenError) and isinstance(info.value, OSError)
    assert json.loads(path.read_text()) == {"old": True}
    assert [p.name for p in tmp_path.iterdir()] == ["m.json"]


def test_atomic_folder_moves_whole_files_and_cleans_up(tmp_path):
    from unigen.files import atomic_folder

    with atomic_folder(tmp_path / "model", last="record.json") as tmp:
        (tmp / "record.json").write_text("{}")
        (tmp / "sub").mkdir()
        (tmp / "sub" / "weights").write_bytes(b"1234")
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*")) == [
        "model", "model/record.json", "model/sub", "model/sub/weights"]
    with pytest.raises(RuntimeError), atomic_folder(tmp_path / "model") as tmp:
        (tmp / "record.json").write_text('{"half": ')
        raise RuntimeError("killed")
    assert (tmp_path / "model" / "record.json").read_text() == "{}"
    assert not list(tmp_path.glob(".tmp-*"))


def test_remove_temporary_clears_files_and_folders(tmp_path):
    st = Stage.open(tmp_path / "s", stage="generate", fingerprint="abc", config={})
    (st.path / ".tmp-model.x1").mkdir()
    (st.path / ".tmp-model.x1" / "model.safetensors").write_bytes(b"half")
    (st.path / "model").mkdir()
    (st.path / "model" / ".tmp-vocab.json.x2").write_text("{")
    assert st.remove_temporary() == 2 and not list(st.path.rglob(".tmp-*"))


# ---------------------------------------------------------------- the work-folder lock

def _holder(workdir, seconds):
    """Another process that holds the lock of ``workdir`` for ``seconds`` (started when it prints)."""
    import subprocess
    import sys
    from pathlib import Path

    import unigen

    code = ("import sys, time\nfrom unigen.lock import workdir_lock\n"
            "with workdir_lock(sys.argv[1]):\n"
            "    print('held', flush=True)\n    time.sleep(float(sys.argv[2]))\n")
    env = {**__import__("os").environ, "PYTHONPATH": str(Path(unigen.__file__).parents[1])}
    proc = subprocess.Popen([sys.executable, "-c", code, str(workdir), str(seconds)], stdout=subprocess.PIPE,
                            text=True, env=env)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_the_lock_keeps_a_second_process_out_and_is_reentrant(tmp_path):
    from unigen.errors import WorkdirBusy
    from unigen.lock import workdir_lock

    with workdir_lock(tmp_path) as path, workdir_lock(tmp_path):  # nested in one process (experiment)
        assert json.loads(path.read_text())["pid"] == __import__("os").getpid()
    holder = _holder(tmp_path, 60)
    try:
        with pytest.raises(WorkdirBusy, match=f"in use by another unigen process .pid {holder.pid} ") as info:
            with workdir_lock(tmp_path):
                pass
        assert "--wait" in str(info.value) and "\n" not in str(info.value)
    finally:
        holder.kill()
        holder.wait()
    notes = []
    with workdir_lock(tmp_path, log=notes.append):  # the dead holder's lock is taken over at once
        pass
    assert notes == [f"{tmp_path / '.unigen.lock'}: took over the lock of pid {holder.pid}, which is no "
                     "longer running"]


def test_wait_queues_behind_the_holder(tmp_path):
    import time

    from unigen.lock import workdir_lock

    holder = _holder(tmp_path, 1.5)
    notes = []
    tic = time.perf_counter()
    with workdir_lock(tmp_path, wait=True, log=notes.append):
        waited = time.perf_counter() - tic
    assert waited > 0 and len(notes) == 1 and "waiting for it" in notes[0]  # it blocked (no timing bound)
    holder.wait()


def test_a_second_unigen_process_in_a_work_folder_exits_with_one_line(tmp_path, capsys):
    from unigen.cli import main

    holder = _holder(tmp_path, 60)
    try:
        assert main(["run", "--workdir", str(tmp_path), "--quiet"]) == 2
        assert main(["experiment", str(_experiment(tmp_path)), "--quiet"]) == 2
        # the stage commands that write into a work folder take the same lock
        rows = tmp_path.parent / "rows.jsonl"
        for command in (["generate"], ["relabel"], ["weight", "--data", str(rows)],
                        ["train", "--data", str(rows)]):
            assert main([*command, "--workdir", str(tmp_path), "--quiet"]) == 2, command
    finally:
        holder.kill()
        holder.wait()
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 6 and all(e.startswith("unigen: error: ") and f"(pid {holder.pid} " in e for e in err)


def _experiment(workdir):
    path = workdir.parent / "exp.yaml"
    path.write_text(f"workdir: {workdir}\noutput: {workdir.parent / 'out.json'}\n"
                    "cells:\n  - {method: unigen, tams: [lstm]}\n")
    return path


def test_iter_jsonl_accepts_bom_and_crlf_and_bounds_lines(tmp_path, monkeypatch):
    import unigen.files
    from unigen.errors import DataError
    from unigen.files import iter_jsonl

    path = tmp_path / "a.jsonl"
    path.write_bytes(b'\xef\xbb\xbf{"a": 1}\r\n\r\n{"a": 2}\r\n')
    assert [v for _, v in iter_jsonl(path)] == [{"a": 1}, {"a": 2}]
    path.write_bytes(b'{"a": 1}\n' + b"[" * 100_000 + b"]" * 100_000 + b"\n")
    with pytest.raises(DataError, match=r"a.jsonl:2: JSON nested too deeply"):
        list(iter_jsonl(path))
    monkeypatch.setattr(unigen.files, "MAX_LINE_BYTES", 1000)
    path.write_bytes(b'{"a": 1}\n"' + b"x" * 5000 + b'"\n')
    with pytest.raises(DataError, match=r"a.jsonl:2: line longer than"):
        list(iter_jsonl(path))
