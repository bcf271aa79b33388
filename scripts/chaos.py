"""Reliability campaign: SIGKILL every stage at random moments, corrupt finished caches, feed hostile inputs.

Everything runs on tiny random models built in-process (a 2-layer GPT-2 with a word-level tokenizer as the
generator, the LSTM task model at hidden size 8), so the campaign needs no network and no real model.

1. **Kills.** An uninterrupted reference run is made first. Then, for each task (the stages ``generate``,
   ``relabel``, ``weight``, ``train``, ``evaluate``, the whole ``unigen run`` and a two-cell
   ``unigen experiment``), trials each start the task in a forked child from the reference's
   upstream folders and SIGKILL it, then resume it (sometimes killing the resume too) until it finishes;
   trials go on until ``--kills`` kills have landed (a kill moment after the task's end does not count).
   Kill moments, seeded, cycle through three kinds: a random moment of the task's measured duration
   (``timer``); the moment the N-th atomic write has its temporary file written and fsynced but not yet
   renamed (``in-write``: a shard, a manifest, a checkpoint or a model file); the moment right after the
   N-th rename (``after-write``: e.g. a shard written but not its manifest), N drawn from the writes the
   reference made. The finished folders are compared with the reference: rows (ids, texts, labels,
   probabilities, weights) byte for byte, no row lost or repeated, the model's weights and vocabulary byte
   for byte, the metrics equal.
2. **Corruption.** ``--corrupt`` trials copy the finished reference work folder, damage one file a manifest
   vouches for (truncate, flip a byte, append a line, delete it, or add a shard the manifest does not list),
   run ``unigen run`` again and check that the damage was reported in one warning line, the stage recomputed,
   and the outputs equal the reference.
3. **Hostile inputs.** Named bad files (random bytes, invalid UTF-8, byte-order marks, CRLF, NUL bytes, a
   10 MB line, deeply nested JSON, wrong types and columns, unknown label words) go through the JSONL and CSV
   readers (``unigen evaluate``), the training-row reader (``unigen train``), the config loader
   (``unigen config``) and ``unigen predict``; each answer is classified as loaded, or one ``unigen: error:``
   line naming the file (and line), or anything else (a failure of the campaign).

Usage::

    python scripts/chaos.py                                   # the full campaign -> results/reliability.json
    python scripts/chaos.py --kills 2 --corrupt 3 --tasks generate,train,run --output /tmp/chaos.json  # quick

Exit status 0 when every trial matched the reference and every hostile input was answered cleanly.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import os
import platform
import random
import shutil
import signal
import sys
import tempfile
import time
import traceback
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

# The campaign forks its children from one process that has imported everything (no 5 s import per kill),
# so that process must hold no threads or locks: one thread per library, no allocator or progress threads,
# and every model is built in a child.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "system")  # no jemalloc background thread
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

ROOT = Path(__file__).resolve().parents[1]
TASKS = ("generate", "relabel", "weight", "train", "evaluate", "run", "experiment")
KINDS = ("timer", "in-write", "after-write")
WORDS = ("the text in positive negative sentiment is of this a movie film great terrible good bad awful "
         "wonderful boring fun i love hate it was not very really product review").split()
DATA = [("i love this movie", 1), ("awful boring film", 0), ("great product", 1), ("bad review", 0),
        ("wonderful fun film", 1), ("terrible product", 0)]


# ---------------------------------------------------------------- the tiny world

def build_world(base: Path) -> dict[str, Any]:
    """A tiny random GPT-2 generator and a labelled test file under ``base``, built in a child process."""
    lm, data = base / "tiny-gpt2", base / "data.jsonl"
    status = wait_child(spawn(lambda _: _build_world(lm, data), base, base / "world.log"))
    if status != "ok":
        raise RuntimeError(f"building the tiny models failed: see {base / 'world.log'}")
    from unigen.config.presets import tiny_run_settings  # light: config only

    overrides = tiny_run_settings(str(lm), str(data), "generate.backend=transformers",
                                  "scoring.backend=transformers", "generate.samples_per_label=8",
                                  "weight.outer_epochs=2", "train.epochs=2")
    return {"lm": str(lm), "data": str(data), "overrides": overrides}


def _build_world(lm: Path, data: Path) -> None:
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    vocab = {t: i for i, t in enumerate(["<pad>", "<eos>", "<unk>", ":", '"', ".", "!", "/", *WORDS])}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="<pad>", eos_token="<eos>",
                                        unk_token="<unk>")
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=len(tokenizer), n_positions=128, n_embd=32, n_layer=2, n_head=2,
                        bos_token_id=1, eos_token_id=1, pad_token_id=0)
    GPT2LMHeadModel(config).save_pretrained(lm)
    tokenizer.save_pretrained(lm)
    data.write_text("".join(json.dumps({"text": t, "label": y}) + "\n" for t, y in DATA))


def experiment_file(world: dict[str, Any], workdir: Path) -> Path:
    path = workdir.parent / f"{workdir.name}.experiment.yaml"
    spec = {"workdir": str(workdir), "output": str(workdir / "records.json"), "base": world["overrides"],
            "cells": [{"group": "main", "method": "unigen", "tams": ["lstm"], "seeds": [1, 2]}]}
    path.write_text(json.dumps(spec))
    return path


def task_fn(task: str, world: dict[str, Any]) -> Callable[[Path], Any]:
    """The function a child runs for ``task`` on a work folder (imports inside: children share them)."""
    from unigen.cli import main
    from unigen.config import load_config
    from unigen.evaluation.stage import evaluate_stage, identity_of
    from unigen.synth.generate_stage import generate_stage
    from unigen.synth.relabel_stage import relabel_stage
    from unigen.tam.stage import MODEL_DIR, train_stage
    from unigen.weighting.stage import weight_stage

    cfg = load_config(None, world["overrides"])
    sets = [x for s in world["overrides"] for x in ("--set", s)]

    def only(workdir: Path, folder: str) -> Path:
        (path,) = (workdir / folder).iterdir()
        return path

    def evaluate(w: Path) -> Any:
        model = str(only(w, "04_train") / MODEL_DIR)
        return evaluate_stage(cfg, w, "lstm", model, identity_of(model, cfg), cfg.evaluate.limit,
                              progress=False)

    def cli(argv: list[str]) -> None:
        code = main(argv)
        if code:
            raise SystemExit(code)

    return {
        "generate": lambda w: generate_stage(cfg, w, progress=False),
        "relabel": lambda w: relabel_stage(cfg, w, progress=False),
        "weight": lambda w: weight_stage(cfg, w, only(w, "02_relabel"), progress=False),
        "train": lambda w: train_stage(cfg, w, only(w, "03_weight"), "lstm", progress=False),
        "evaluate": evaluate,
        "run": lambda w: cli(["run", "--workdir", str(w), "--quiet", *sets]),
        "experiment": lambda w: cli(["experiment", str(experiment_file(world, w)), "--quiet",
                                     "--baselines", str(w / "none.json")]),
    }[task]


#: the stage folders a task writes (the rest of a trial's work folder is its input)
OUTPUTS = {"generate": ["01_generate"], "relabel": ["02_relabel"], "weight": ["03_weight"],
           "train": ["04_train"], "evaluate": ["05_evaluate"], "run": [], "experiment": []}


def prepare(reference: Path, task: str, trial: Path) -> None:
    """The trial's starting folder: the reference's finished upstream stages (nothing for run and
    experiment)."""
    if task in ("run", "experiment"):
        trial.mkdir(parents=True)
        return
    shutil.copytree(reference, trial, ignore=shutil.ignore_patterns(".unigen.lock"))
    for folder in OUTPUTS[task]:
        for stage in (trial / folder).iterdir():
            if task != "evaluate" or _is_task_model_evaluation(stage):
                shutil.rmtree(stage)


def _is_task_model_evaluation(stage: Path) -> bool:
    manifest = json.loads((stage / "manifest.json").read_text())
    return "train" in manifest.get("config", {}).get("identity", {})


# ---------------------------------------------------------------- children

def _hooks(kind: str, n: int, counter: Path | None) -> None:
    """In a child: SIGKILL itself at the n-th write (``in-write``: fsynced, not renamed; ``after-write``:
    renamed), or count the renames into ``counter`` (the reference)."""
    real_fsync, real_replace = os.fsync, os.replace
    calls = {"fsync": 0, "replace": 0}

    def fsync(fd: int) -> None:
        real_fsync(fd)
        calls["fsync"] += 1
        if kind == "in-write" and calls["fsync"] == n:
            os.kill(os.getpid(), signal.SIGKILL)

    def replace(src: Any, dst: Any, **kw: Any) -> None:
        real_replace(src, dst, **kw)
        calls["replace"] += 1
        if counter is not None:
            counter.write_text(json.dumps(calls))
        if kind == "after-write" and calls["replace"] == n:
            os.kill(os.getpid(), signal.SIGKILL)

    os.fsync, os.replace = fsync, replace


def spawn(fn: Callable[[Path], Any], workdir: Path, log: Path, kind: str = "none", n: int = 0,
          counter: Path | None = None) -> int:
    """Fork a child that runs ``fn(workdir)`` with its output in ``log``; returns its pid."""
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid:
        return pid
    code = 1
    try:
        fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        sys.stdout = sys.stderr = open(fd, "w", buffering=1, encoding="utf-8", errors="replace")
        _hooks(kind, n, counter)
        fn(workdir)
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:
        traceback.print_exc()
    finally:
        os._exit(code)


def wait_child(pid: int, kill_after: float | None = None, limit: float = 300.0) -> str:
    """``"ok"``, ``"failed"``, ``"killed"`` (by us or by its own write hook) or ``"timeout"``."""
    start = time.perf_counter()
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            if os.WIFSIGNALED(status):
                return "killed" if os.WTERMSIG(status) == signal.SIGKILL else "failed"
            return "ok" if os.WEXITSTATUS(status) == 0 else "failed"
        elapsed = time.perf_counter() - start
        if kill_after is not None and elapsed >= kill_after or elapsed > limit:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            return "killed" if elapsed <= limit else "timeout"
        time.sleep(0.005)


def run_once(fn: Callable[[Path], Any], workdir: Path, log: Path, limit: float = 300.0,
             **kw: Any) -> tuple[str, float]:
    tic = time.perf_counter()
    kill_after = kw.pop("kill_after", None)
    status = wait_child(spawn(fn, workdir, log, **kw), kill_after, limit)
    return status, time.perf_counter() - tic


# ---------------------------------------------------------------- comparing with the reference

def _rows_digest(folder: Path) -> tuple[int, int, str]:
    """(rows, distinct row ids, sha256 of the shard bytes in order) of a stage folder."""
    h = hashlib.sha256()
    rows, ids = 0, set()
    for shard in sorted((folder / "shards").glob("shard-*.jsonl")):
        data = shard.read_bytes()
        h.update(shard.name.encode() + b"\0" + data)
        for line in data.splitlines():
            row = json.loads(line)
            rows += 1
            ids.add(row.get("id", rows))
    return rows, len(ids), h.hexdigest()


def _strip_seconds(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip_seconds(v) for k, v in value.items() if k not in ("seconds", "samples_per_s")}
    if isinstance(value, list):
        return [_strip_seconds(v) for v in value]
    return value


def snapshot(workdir: Path) -> dict[str, Any]:
    """What must not differ from the reference: every stage folder's status, rows and model bytes."""
    out: dict[str, Any] = {}
    for manifest in sorted(workdir.glob("0*/*/manifest.json")):
        folder = manifest.parent
        key = f"{folder.parent.name}/{folder.name}"
        m = json.loads(manifest.read_text())
        entry: dict[str, Any] = {"status": m.get("status"), "rows": _rows_digest(folder)}
        for name in ("model/model.safetensors", "model/vocab.json"):
            if (folder / name).is_file():
                entry[name] = hashlib.sha256((folder / name).read_bytes()).hexdigest()
        if (folder / "metrics.json").is_file():
            entry["metrics"] = _strip_seconds(json.loads((folder / "metrics.json").read_text()))
        out[key] = entry
    if (workdir / "records.json").is_file():
        out["records"] = [{k: v for k, v in r.items() if k in ("accuracy", "n", "seed", "train_rows")}
                          for r in json.loads((workdir / "records.json").read_text())]
    return out


def differences(trial: dict[str, Any], reference: dict[str, Any], keys: list[str] | None) -> list[str]:
    keys = keys if keys is not None else sorted(set(trial) | set(reference))
    out = []
    for key in keys:
        if trial.get(key) != reference.get(key):
            t, r = trial.get(key) or {}, reference.get(key) or {}
            what = [k for k in sorted(set(t) | set(r)) if t.get(k) != r.get(k)] if isinstance(t, dict) else []
            out.append(f"{key}: {', '.join(what) or 'differs'}")
            if isinstance(t, dict) and t.get("rows") and r.get("rows") and t["rows"][0] != r["rows"][0]:
                out.append(f"{key}: {t['rows'][0]} rows instead of {r['rows'][0]}")
    return out


# ---------------------------------------------------------------- the campaign

class Campaign:
    def __init__(self, base: Path, seed: int, log: Callable[[str], None]):
        self.base, self.rng, self.log = base, random.Random(seed), log
        self.world = build_world(base)
        self.reference: dict[str, Path] = {}
        self.expected: dict[str, dict[str, Any]] = {}
        self.duration: dict[str, float] = {}
        self.writes: dict[str, int] = {}

    def fn(self, task: str) -> Callable[[Path], Any]:
        return task_fn(task, self.world)

    def limit(self, task: str) -> float:
        """Seconds a child may take before it counts as hung (a failed trial)."""
        return max(120.0, 30 * self.duration[task])

    def make_reference(self, tasks: list[str]) -> None:
        """Uninterrupted runs: ``run`` (its folder is every stage's input) and ``experiment``; then every
        single-stage task timed and its writes counted on a copy."""
        for task in ("run", "experiment"):
            if task == "experiment" and task not in tasks:
                continue
            ref = self.base / f"reference-{task}"
            ref.mkdir()
            counter = self.base / f"writes-{task}.json"
            log = self.base / f"reference-{task}.log"
            status, seconds = run_once(self.fn(task), ref, log, counter=counter)
            if status != "ok":
                raise RuntimeError(f"the reference {task} failed: see {self.base}/reference-{task}.log")
            self.reference[task], self.expected[task] = ref, snapshot(ref)
            self.duration[task], self.writes[task] = seconds, json.loads(counter.read_text())["replace"]
        for task in tasks:
            if task in ("run", "experiment"):
                continue
            trial = self.base / f"timing-{task}"
            prepare(self.reference["run"], task, trial)
            counter = self.base / f"writes-{task}.json"
            log = self.base / f"timing-{task}.log"
            status, seconds = run_once(self.fn(task), trial, log, counter=counter)
            if status != "ok":
                raise RuntimeError(f"the reference {task} failed: see {self.base}/timing-{task}.log")
            self.duration[task], self.writes[task] = seconds, json.loads(counter.read_text())["replace"]
            shutil.rmtree(trial)
        self.log("reference: " + ", ".join(f"{t} {self.duration[t]:.1f} s / {self.writes[t]} writes"
                                           for t in self.duration))

    def kill_trial(self, task: str, index: int) -> dict[str, Any]:
        """Start ``task``, kill it (one to three times), resume it to the end, compare."""
        trial = self.base / f"trial-{task}-{index}"
        prepare(self.reference["run"], task, trial)
        log = self.base / f"trial-{task}-{index}.log"
        kills: list[str] = []
        for round_ in range(self.rng.choice((1, 1, 2, 3))):
            kind = KINDS[(index + round_) % len(KINDS)]
            kw: dict[str, Any] = {"kind": kind}
            if kind == "timer":
                kw["kill_after"] = self.rng.uniform(0.0, self.duration[task])
            else:
                kw["n"] = self.rng.randint(1, max(1, self.writes[task]))
            status, _ = run_once(self.fn(task), trial, log, self.limit(task), **kw)
            if status == "ok":  # it finished before the kill moment
                break
            if status != "killed":
                return {"task": task, "kills": kills, "ok": False,
                        "problem": f"attempt {round_ + 1}: {status}", "log": str(log)}
            kills.append(kind)
        status, _ = run_once(self.fn(task), trial, log, self.limit(task))  # resume to the end
        reference = "experiment" if task == "experiment" else "run"
        keys = None if task in ("run", "experiment") else [
            k for k in self.expected[reference] if k.split("/")[0] in OUTPUTS[task]]
        diff = differences(snapshot(trial), self.expected[reference], keys) if status == "ok" else []
        ok = status == "ok" and not diff
        result = {"task": task, "kills": kills, "ok": ok}
        if not ok:
            result.update(problem=f"final run {status}" if status != "ok" else "; ".join(diff), log=str(log))
        else:
            shutil.rmtree(trial)
            log.unlink(missing_ok=True)
        return result

    def corrupt_trial(self, index: int) -> dict[str, Any]:
        """Damage one vouched-for file of the finished reference run; rerun; compare."""
        from unigen.files import hashed_files

        trial = self.base / f"corrupt-{index}"
        shutil.copytree(self.reference["run"], trial, ignore=shutil.ignore_patterns(".unigen.lock"))
        files = [(folder, rel) for folder in sorted(trial.glob("0*/*")) for rel in hashed_files(folder)]
        folder, rel = self.rng.choice(files)
        how = ("truncate", "flip a byte", "append a line", "delete", "extra shard")[index % 5]
        target = folder / rel
        data = target.read_bytes()
        if how == "truncate":
            target.write_bytes(data[: len(data) // 2])
        elif how == "flip a byte":
            pos = self.rng.randrange(max(1, len(data)))
            target.write_bytes(data[:pos] + bytes([(data[pos] if data else 0) ^ 0x20]) + data[pos + 1:])
        elif how == "append a line":
            target.write_bytes(data + b'{"id": "intruder", "text": "not from this run"}\n')
        elif how == "delete":
            target.unlink()
        else:
            (folder / "shards").mkdir(exist_ok=True)
            (folder / "shards" / "shard-09999.jsonl").write_text('{"id": "intruder", "text": "extra"}\n')
            rel = "shards/shard-09999.jsonl"
        log = self.base / f"corrupt-{index}.log"
        status, _ = run_once(self.fn("run"), trial, log, self.limit("run"))
        text = log.read_text(errors="replace") if log.is_file() else ""
        detected = any(line.startswith("unigen: warning:") and rel in line and folder.name in line
                       for line in text.splitlines())
        diff = differences(snapshot(trial), self.expected["run"], None) if status == "ok" else ["run failed"]
        ok = status == "ok" and detected and not diff
        result = {"file": f"{folder.parent.name}/{rel}", "how": how, "detected": detected,
                  "recomputed_identical": status == "ok" and not diff, "ok": ok}
        if ok:
            shutil.rmtree(trial)
            log.unlink(missing_ok=True)
        else:
            result.update(problem="; ".join(diff) or "not reported", log=str(log))
        return result


# ---------------------------------------------------------------- hostile inputs

def hostile_files(folder: Path, rng: random.Random) -> dict[str, bytes]:
    """Named hostile inputs (their bytes); the extension picks the reader."""
    good = b'{"text": "i love this movie", "label": 1}\n{"text": "awful film", "label": 0}\n'
    deep = b"[" * 100_000 + b"]" * 100_000
    cases = {
        "random-bytes.jsonl": rng.randbytes(4096),
        "random-bytes.csv": rng.randbytes(4096),
        "invalid-utf8.jsonl": good + b'{"text": "caf\xe9", "label": 1}\n',
        "invalid-utf8.csv": b"text,label\nfine,1\ncaf\xe9,0\n",
        "bom.jsonl": b"\xef\xbb\xbf" + good,
        "bom.csv": b"\xef\xbb\xbftext,label\ngreat film,1\nawful film,0\n",
        "crlf.jsonl": good.replace(b"\n", b"\r\n"),
        "crlf.csv": b"text,label\r\ngreat film,1\r\nawful film,0\r\n",
        "nul.jsonl": good + b'{"text": "nul\x00byte", "label": 1}\n',
        "nul-escaped.jsonl": good + b'{"text": "nul\\u0000byte", "label": 1}\n',
        "nul.csv": b"text,label\ngreat,1\nnul\x00byte,0\n",
        "10mb-line.jsonl": good + json.dumps({"text": "good " * 2_000_000, "label": 1}).encode() + b"\n",
        "10mb-line.csv": b"text,label\n" + b"good " * 2_000_000 + b",1\nawful film,0\n",
        "deep-json.jsonl": good + deep + b"\n",
        "surrogate.jsonl": good + b'{"text": "half \\ud800 pair", "label": 1}\n',
        "wrong-types.jsonl": good + b'{"text": 12, "label": [1]}\n',
        "not-an-object.jsonl": good + b'["text", 1]\n',
        "wrong-columns.jsonl": b'{"review": "great", "stars": 5}\n',
        "wrong-columns.csv": b"review,stars\ngreat,5\n",
        "short-row.csv": b"text,label\ngreat film,1\nonly text\n",
        "unknown-label.jsonl": good + b'{"text": "meh", "label": "neutral"}\n',
        "unknown-label.csv": b"text,label\ngreat,positive\nmeh,neutral\n",
        "label-out-of-range.jsonl": good + b'{"text": "meh", "label": 7}\n',
        "empty.jsonl": b"",
        "blank-lines.jsonl": b"\n\n  \n" + good + b"\n\n",
        "random-bytes.yaml": rng.randbytes(2048),
        "invalid-utf8.yaml": b"seed: 1 # caf\xe9\n",
        "bom.yaml": b"\xef\xbb\xbfseed: 3\n",
        "crlf.yaml": b"seed: 3\r\ntrain:\r\n  epochs: 2\r\n",
        "nul.yaml": b"seed: 1\x00\n",
        "deep.yaml": b"[" * 50_000 + b"]" * 50_000 + b"\n",
        "wrong-types.yaml": b"seed: [1, 2]\ntrain: {epochs: fast}\n",
        "nested-list.yaml": b"run: {tams: [[lstm, [x]]]}\n",
        "unknown-key.yaml": b"generate: {colour: red}\n",
        "top-level-list.yaml": b"- seed\n- 1\n",
        "10mb.yaml": b"seed: 1\n# " + b"x" * 10_000_000 + b"\n",
    }
    for name, data in cases.items():
        (folder / name).write_bytes(data)
    return cases


PREDICT_CASES = {  # stdin bytes for `unigen predict`
    "predict: plain lines": b"i love this movie\nawful film\n",
    "predict: invalid UTF-8": b"fine\ncaf\xe9\n",
    "predict: BOM and CRLF": b"\xef\xbb\xbfgreat film\r\nawful film\r\n",
    "predict: NUL bytes": b"nul\x00byte\n",
    "predict: a 10 MB line": b"good " * 2_000_000 + b"\n",
    "predict: random bytes": None,  # filled with seeded random bytes
    "predict: only blank lines": b"\n \n\n",
}


def _answer(code: int, err: str, name: str) -> str:
    """How a command answered a hostile input: loaded, a one-line error (naming what), or a bug."""
    import re

    lines = [line for line in err.splitlines() if line.strip() and not line.startswith("unigen: warning:")]
    if code == 0:
        return "loaded"
    if code == 2 and len(lines) == 1 and lines[0].startswith("unigen: error: ") and "Traceback" not in err:
        if re.search(re.escape(name) + r":\d+:", lines[0]):
            return "one-line error naming file and line"
        return "one-line error naming the file" if name in lines[0] else "one-line error naming the setting"
    return "BUG: " + (lines[-1] if lines else f"exit {code}")[:200]


def hostile_campaign(base: Path, model: Path, rng: random.Random) -> list[dict[str, Any]]:
    """Every hostile input through its reader's command; in-process (``main`` returns the exit status)."""
    import resource

    from unigen.cli import main

    folder = base / "hostile"
    folder.mkdir()
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    cases = hostile_files(folder, rng)
    out = []

    def call(argv: list[str], stdin: bytes | None = None) -> tuple[int, str, float, float]:
        err, old_stdin = io.StringIO(), sys.stdin
        if stdin is not None:
            sys.stdin = io.TextIOWrapper(io.BytesIO(stdin))
        tic = time.perf_counter()
        try:
            with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
                try:
                    code = main(argv)
                except SystemExit as exc:
                    code = exc.code if isinstance(exc.code, int) else 1
                except Exception:
                    traceback.print_exc(file=err)
                    code = -1
        finally:
            sys.stdin = old_stdin
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - rss_before
        return code, err.getvalue(), time.perf_counter() - tic, rss

    for name in cases:
        path = folder / name
        if name.endswith(".yaml"):
            runs = [("config", ["config", "--config", str(path)])]
        else:
            runs = [("evaluate", ["evaluate", "--model", "vader", "--datasets", str(path), "--quiet"])]
            if name.endswith(".jsonl"):
                runs.append(("train", ["train", "--data", str(path), "--output", str(folder / f"t-{name}"),
                                       "--quiet", "--set", "train.epochs=1", "--set", "train.lstm_hidden=8",
                                       "--set", "train.projection_dim=8", "--set", "device=cpu"]))
        for command, argv in runs:
            code, err, seconds, rss = call(argv)
            out.append({"input": name, "command": command, "answer": _answer(code, err, name),
                        "seconds": round(seconds, 2), "peak_rss_growth_mb": round(rss),
                        "message": err.strip()[-300:]})
    for label, data in PREDICT_CASES.items():
        data = rng.randbytes(4096) if data is None else data
        code, err, seconds, rss = call(["predict", "--model", str(model), "--device", "cpu"], stdin=data)
        out.append({"input": label, "command": "predict", "answer": _answer(code, err, "<stdin>"),
                    "seconds": round(seconds, 2), "peak_rss_growth_mb": round(rss),
                    "message": err.strip()[-300:]})
    return out


# ---------------------------------------------------------------- main

def summarise(kills: list[dict[str, Any]], corrupt: list[dict[str, Any]], hostile: list[dict[str, Any]],
              meta: dict[str, Any]) -> dict[str, Any]:
    per_task: dict[str, dict[str, Any]] = {}
    for r in kills:
        t = per_task.setdefault(r["task"], {"trials": 0, "kills": 0, "by_kind": Counter(), "identical": 0,
                                            "failed": []})
        t["trials"] += 1
        t["kills"] += len(r["kills"])
        t["by_kind"].update(r["kills"])
        t["identical"] += r["ok"]
        if not r["ok"]:
            t["failed"].append(r)
    for t in per_task.values():
        t["by_kind"] = dict(t["by_kind"])
    return {**meta, "kills": per_task,
            "corruption": {"tried": len(corrupt), "detected": sum(r["detected"] for r in corrupt),
                           "recomputed_identical": sum(r["recomputed_identical"] for r in corrupt),
                           "by_how": dict(Counter(r["how"] for r in corrupt)),
                           "failed": [r for r in corrupt if not r["ok"]]},
            "hostile": {"tried": len(hostile), "answers": dict(Counter(r["answer"] for r in hostile)),
                        "max_seconds": max((r["seconds"] for r in hostile), default=0),
                        "peak_rss_growth_mb": max((r["peak_rss_growth_mb"] for r in hostile), default=0),
                        "cases": hostile}}


def campaign(kills: int = 25, corrupt: int = 25, tasks: tuple[str, ...] = TASKS, seed: int = 0,
             hostile: bool = True, workdir: str | Path | None = None,
             log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run the campaign (module docstring) and return its summary."""
    import torch
    import tqdm

    torch.set_num_threads(1)
    tqdm.tqdm.monitor_interval = 0  # no monitor thread in the forking process
    tic = time.perf_counter()
    base = Path(tempfile.mkdtemp(prefix="unigen-chaos-", dir=workdir))
    c = Campaign(base, seed, log)
    for task in tasks:
        c.fn(task)  # every import happens here, before the first fork
    threads = [open(f"/proc/self/task/{t}/comm").read().strip() for t in os.listdir("/proc/self/task")] \
        if Path("/proc/self/task").is_dir() else []
    if len(threads) > 1:
        log(f"warning: the forking process runs {len(threads)} threads ({', '.join(threads)})")
    c.make_reference(list(tasks))
    results: list[dict[str, Any]] = []
    for task in tasks:  # trials until ``kills`` kill points landed (a kill can come after the task ended)
        done: list[dict[str, Any]] = []
        while sum(len(r["kills"]) for r in done) < kills and len(done) < 3 * kills:
            done.append(c.kill_trial(task, len(done)))
        results.extend(done)
        log(f"{task}: {sum(len(r['kills']) for r in done)} kills in {len(done)} trials, "
            f"{sum(r['ok'] for r in done)} identical to the reference")
    corrupted = [c.corrupt_trial(i) for i in range(corrupt)]
    if corrupt:
        log(f"corruption: {sum(r['detected'] for r in corrupted)}/{len(corrupted)} detected, "
            f"{sum(r['recomputed_identical'] for r in corrupted)} recomputed identically")
    answers: list[dict[str, Any]] = []
    if hostile:
        from unigen.tam.stage import MODEL_DIR

        (train,) = (c.reference["run"] / "04_train").iterdir()
        answers = hostile_campaign(base, train / MODEL_DIR, c.rng)
        log(f"hostile inputs: {dict(Counter(r['answer'] for r in answers))}")
    meta = {"seed": seed, "kills_per_task": kills, "seconds": round(time.perf_counter() - tic, 1),
            "reference_seconds": {k: round(v, 2) for k, v in c.duration.items()},
            "reference_writes": c.writes, "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, "
            f"Python {platform.python_version()}, torch {torch.__version__}", "folder": str(base)}
    summary = summarise(results, corrupted, answers, meta)
    if summary_ok(summary):
        shutil.rmtree(base, ignore_errors=True)
    return summary


def summary_ok(summary: dict[str, Any]) -> bool:
    return (all(not t["failed"] for t in summary["kills"].values()) and not summary["corruption"]["failed"]
            and not any(a.startswith("BUG") for a in summary["hostile"]["answers"]))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--kills", type=int, default=25,
                   help="kill points per task (trials run until this many kills landed)")
    p.add_argument("--corrupt", type=int, default=25, help="corruption trials")
    p.add_argument("--tasks", default=",".join(TASKS), help="comma list of " + ", ".join(TASKS))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-hostile", action="store_true", help="skip the hostile-input part")
    p.add_argument("--workdir", default=None, help="where the trial folders go (default: the temp folder)")
    p.add_argument("--output", default=str(ROOT / "results" / "reliability.json"))
    args = p.parse_args(argv)
    tasks = tuple(t for t in args.tasks.split(",") if t)
    unknown = set(tasks) - set(TASKS)
    if unknown:
        p.error(f"unknown task(s) {', '.join(sorted(unknown))}")
    summary = campaign(args.kills, args.corrupt, tasks, args.seed, not args.no_hostile, args.workdir,
                       log=lambda m: print(m, flush=True))
    summary["command"] = "python scripts/chaos.py " + " ".join(argv if argv is not None else sys.argv[1:])
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(summary, indent=1) + "\n")
    print(f"wrote {args.output}")
    return 0 if summary_ok(summary) else 1


if __name__ == "__main__":
    sys.exit(main())
