"""The fast model of issue 23: a MiniLM-L6 student distilled from the default task model (the teacher) on
real unlabeled texts (``unigen adapt --set adapt.method=distill``'s core), measured two-fold on the seven
FULL test sets.

    PYTHONPATH=src .venv/bin/python experiments/distill_protocol.py TEACHER_MODEL TEACHER_PROBS OUT_DIR \\
        [--per-set 1000] [--set adapt.KEY=VALUE ...] [--report results/fast_model.md]

``TEACHER_PROBS`` is the ``OUT_PREFIX`` of ``experiments/full_eval.py`` run on ``TEACHER_MODEL``: the
teacher's saved probabilities for every test text (so it is not run again; they are its outputs with the
evaluation engine). ``-`` instead: the teacher reads only the texts the students train on (about 7,000,
not 40,000: IMDB's 25,000 reviews alone cost the teacher half an hour on 2 cores), cached under
``OUT_DIR/teacher/``, and the table has no teacher column (its full-set accuracy is the main job's, in
``results/main_run.json``). Every test set is split into the fixed seeded halves of
experiments/adapt_protocol.py. Fold A: one student is distilled on the texts of half A of all seven sets
together (at most ``--per-set`` of each, a seeded choice; the labels never leave this script) with the
teacher's probabilities as targets, plus the teacher's synthetic training rows, and predicts every text of
every half B; fold B the other way round. Every text of every full set is so predicted by a student that
never saw it, and the full-set accuracy counts both folds; the teacher's accuracy comes from its saved
probabilities of the same texts. Settings are the ``adapt`` defaults for ``method=distill`` (or ``--set``),
chosen before this run; ``--set adapt.student=teacher [--set adapt.student_layers=N]`` distills the teacher
with only N of its layers kept, warm-started from its weights, instead of a new MiniLM-L6.

Resumable: each fold's student is saved under ``OUT_DIR/fold-X/model`` (training checkpoints in
``fold-X/checkpoints``), each fold's predictions in ``OUT_DIR/fold-X/<set>.npy``.
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from adapt_protocol import capped, engine_model, halves  # noqa: E402
from full_eval import cpu_name  # noqa: E402

from unigen.adaptation.distill import distill_student  # noqa: E402
from unigen.adaptation.stage import synthetic_rows, task_model_folder  # noqa: E402
from unigen.config import load_config  # noqa: E402
from unigen.evaluation.datasets import SET_DOMAIN, load_dataset  # noqa: E402
from unigen.files import atomic_write_json, atomic_write_text  # noqa: E402
from unigen.tam.model import CONFIG_NAME  # noqa: E402


def fold_student(cfg, teacher: Path, out: Path, texts: list[str], probs: np.ndarray, record: dict) -> Path:
    """The fold's student (trained now, or loaded when a previous run saved it)."""
    folder = out / "model"
    if (folder / CONFIG_NAME).is_file():
        return folder
    synthetic, source = synthetic_rows(teacher, probs.shape[1])
    tic = time.perf_counter()
    result, info = distill_student(cfg, texts, probs, synthetic, workdir=out / "checkpoints", teacher=teacher)
    info.update(seconds=round(time.perf_counter() - tic, 1), synthetic_from=source)
    record["train"] = info
    result.model.to("cpu").save_pretrained(folder, training={"distill_protocol": info})
    return folder


@functools.cache
def loaded_teacher(teacher: Path):
    """The teacher with the evaluation engine, loaded once for every set and half."""
    return engine_model(teacher)


def teacher_on(teacher: Path, npy: Path, texts: list[str]) -> np.ndarray:
    """The teacher's probabilities of ``texts`` with the evaluation engine, cached in ``npy``."""
    if not npy.is_file():
        npy.parent.mkdir(parents=True, exist_ok=True)
        tic = time.perf_counter()
        probs = loaded_teacher(teacher).predict_proba(texts, batch_size=64)
        np.save(npy, np.asarray(probs, dtype=np.float32))
        print(f"teacher: {npy.stem} {len(texts)} texts in {time.perf_counter() - tic:.0f} s", flush=True)
    return np.load(npy)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("teacher")
    p.add_argument("teacher_probs")
    p.add_argument("out")
    p.add_argument("--per-set", type=int, default=1000)
    p.add_argument("--set", action="append", default=[], dest="overrides")
    p.add_argument("--report", default=None)
    args = p.parse_args(argv)
    cfg = load_config(None, ["adapt.method=distill", "adapt.prior=none", *args.overrides])
    teacher = task_model_folder(args.teacher)
    out = Path(args.out)
    records_path = out / "records.json"
    records = json.loads(records_path.read_text()) if records_path.is_file() else {}
    sets = {name: load_dataset(name) for name in SET_DOMAIN}
    split = {name: halves(len(ds), name) for name, ds in sets.items()}
    full_probs = args.teacher_probs != "-"
    if full_probs:
        teacher_probs = {name: np.load(f"{args.teacher_probs}.{name}.npy") for name in sets}
    for fold, (train_half, eval_half) in {"A": (0, 1), "B": (1, 0)}.items():
        rec = records.setdefault(fold, {})
        texts, probs = [], []
        for name, ds in sets.items():
            idx = capped(split[name][train_half], args.per_set, name, f"distill-{fold}")
            chosen = [ds.texts[i] for i in idx]
            texts += chosen
            probs.append(teacher_probs[name][idx] if full_probs
                         else teacher_on(teacher, out / "teacher" / f"{name}-{fold}.npy", chosen))
        folder = fold_student(cfg, teacher, out / f"fold-{fold}", texts, np.concatenate(probs), rec)
        atomic_write_json(records_path, records)
        model = None
        for name, ds in sets.items():
            npy = out / f"fold-{fold}" / f"{name}.npy"
            if npy.is_file():
                continue
            model = model or engine_model(folder)
            idx = split[name][eval_half]
            tic = time.perf_counter()
            np.save(npy, np.asarray(model.predict_proba([ds.texts[i] for i in idx], batch_size=64),
                                    dtype=np.float32))
            rec.setdefault("predict_seconds", {})[name] = round(time.perf_counter() - tic, 1)
            atomic_write_json(records_path, records)
            print(f"fold {fold} {name}: {len(idx)} texts predicted", flush=True)
    rows, student_acc, teacher_acc = [], [], []
    for name, ds in sets.items():
        labels = np.asarray(ds.labels)
        pred = np.zeros(len(ds), dtype=int)
        for fold, eval_half in (("A", 1), ("B", 0)):
            pred[split[name][eval_half]] = np.load(out / f"fold-{fold}" / f"{name}.npy").argmax(1)
        s = float((pred == labels).mean())
        student_acc.append(s)
        if not full_probs:
            rows.append(f"| {name} | {len(ds):,} | {100 * s:.2f} |")
            continue
        t = float((teacher_probs[name].argmax(1) == labels).mean())
        teacher_acc.append(t)
        rows.append(f"| {name} | {len(ds):,} | {100 * t:.2f} | {100 * s:.2f} | {100 * (s - t):+.2f} |")
    s_mean = 100 * np.mean(student_acc)
    records["full_sets"] = {"student": dict(zip(sets, student_acc)), "student_average": s_mean / 100,
                            "cpu": cpu_name()}
    if full_probs:
        t_mean = 100 * np.mean(teacher_acc)
        records["full_sets"].update(teacher=dict(zip(sets, teacher_acc)), teacher_average=t_mean / 100)
        rows.append(f"| **mean** | | **{t_mean:.2f}** | **{s_mean:.2f}** | {s_mean - t_mean:+.2f} |")
        head = "| set | n | teacher | student (two-fold) | student - teacher |\n|---|---|---|---|---|\n"
    else:
        rows.append(f"| **mean** | | **{s_mean:.2f}** |")
        head = "| set | n | student (two-fold) |\n|---|---|---|\n"
    atomic_write_json(records_path, records)
    table = head + "\n".join(rows) + "\n"
    print(table)
    if args.report:
        atomic_write_text(Path(args.report), table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
