"""Measure the baselines and write results/baselines.{json,md}.

VADER on the full test sets; Prompting with each embedded generator, both scoring rules (the paper's
mean-NLL rule and the calibrated next-token verbalizer rule), on a fixed seeded subsample per set.
Resumable: finished (method, dataset) cells in results/baselines.json are kept and skipped.

    python scripts/baselines.py [--limit 200] [--gemma-limit 60] [--out results]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import time
from pathlib import Path

import torch

from unigen.config import load_config
from unigen.evaluation.evaluate import PromptClassifier, VaderClassifier, evaluate_classifier, load_eval_sets
from unigen.evaluation.paper import TEST_SETS
from unigen.evaluation.tables import format_table
from unigen.files import atomic_write_json, atomic_write_text
from unigen.synth.backends import make_scorer

METHODS = [  # (name, model spec, scoring overrides)
    ("VADER", "vader", {}),
    ("Prompting SmolLM2-135M, paper rule (mean NLL)", "smollm2-135m", {"rule": "nll"}),
    ("Prompting SmolLM2-135M, verbalizer + calibration", "smollm2-135m", {"rule": "verbalizer"}),
    ("Prompting Gemma-3-270M, paper rule (mean NLL)", "gemma3-270m", {"rule": "nll"}),
    ("Prompting Gemma-3-270M, verbalizer + calibration", "gemma3-270m", {"rule": "verbalizer"}),
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--limit", type=int, default=200, help="rows per set for Prompting (VADER: full sets)")
    ap.add_argument(
        "--gemma-limit",
        type=int,
        default=60,
        help="rows per set for Gemma-3-270M (its 262k-word output layer makes the nll rule slow on CPU)",
    )
    ap.add_argument("--out", default="results")
    ap.add_argument("--only", default=None, help="comma list of method-name substrings to run")
    args = ap.parse_args()
    out = Path(args.out)
    json_path = out / "baselines.json"
    results = json.loads(json_path.read_text()) if json_path.is_file() else {}
    cfg = load_config(None)
    for name, spec, scoring in METHODS:
        if args.only and not any(s in name for s in args.only.split(",")):
            continue
        done = results.get(name, {})
        todo = [s for s in TEST_SETS if s not in done]
        if not todo:
            continue
        limit = None if spec == "vader" else args.gemma_limit if "gemma" in spec else args.limit
        if spec == "vader":
            clf = VaderClassifier()
        else:
            # the library's scorer dispatch: scoring.backend (ctranslate2 by default) as in `unigen run`
            scorer = make_scorer(cfg, scoring=dataclasses.replace(cfg.scoring, **scoring), generator=spec)
            clf = PromptClassifier(scorer, name)
        for ds in load_eval_sets(",".join(todo), cfg, limit):
            start = time.perf_counter()
            res = evaluate_classifier(clf, [ds])[ds.name]
            done[ds.name] = {"accuracy": res["accuracy"], "macro_f1": res["macro_f1"], "n": res["n"]}
            print(f"{name} | {ds.name}: acc {res['accuracy']:.4f} n {res['n']} "
                  f"({time.perf_counter() - start:.0f} s)", flush=True)
            done.pop("average", None)
            if all(s in done for s in TEST_SETS):
                done["average"] = sum(done[s]["accuracy"] for s in TEST_SETS) / len(TEST_SETS)
            results[name] = done
            atomic_write_json(json_path, results)
    complete = {k: v for k, v in results.items() if "average" in v}
    machine = f"{platform.machine()}, {torch.get_num_threads()} torch threads, torch {torch.__version__}"
    text = [
        "# Baselines on the seven test sets",
        "",
        format_table(complete, title="Accuracy / macro-F1 (%)"),
        "",
        f"VADER: full test sets. Prompting: a fixed seeded subsample of {args.limit} rows per set for "
        f"SmolLM2 and {args.gemma_limit} for Gemma-3-270M (seed 42, the same rows for every method at equal "
        "n); texts cut "
        "to 128 LM tokens. One standard error of an accuracy is about "
        f"{100 * (0.25 / args.limit) ** 0.5:.1f} points at n = {args.limit} and "
        f"{100 * (0.25 / args.gemma_limit) ** 0.5:.1f} at n = {args.gemma_limit}.",
        "",
        f"Command: `python scripts/baselines.py --limit {args.limit} --gemma-limit {args.gemma_limit}` "
        f"(resumable). Machine: 2-core AMD EPYC CPU, no GPU, {machine}; other jobs shared the CPU, so no "
        "timings are given.",
    ]
    atomic_write_text(out / "baselines.md", "\n".join(text) + "\n")


if __name__ == "__main__":
    main()
