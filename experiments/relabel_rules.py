"""Compare relabel rules and task-model settings on the same generated texts (issue 12, results/quality.md).

Two steps, so that the LM scores once and every variant trains on exactly the same texts:

    # 1. raw scores of every generated text under the verbalizer rule (and optionally nll)
    python experiments/relabel_rules.py score GEN_DIR scores.npz [--rules verbalizer,nll]
    # 2. a MiniLM task model on one labelling of those texts, evaluated on the seven test sets
    python experiments/relabel_rules.py train scores.npz VARIANT [--set train.pooling=mean ...]
        [--eval-len 40,128] [--limit 500] [--n 0] [--log results.jsonl] [--save MODEL_DIR]

``GEN_DIR`` is a finished ``01_generate/<fingerprint>`` folder. Variants are ``<rule>-<filter>``: rules
``v`` (verbalizer, content-free calibrated), ``vc`` (verbalizer, each label's scores centred on the
whole generated sample), ``n`` / ``nc`` (the nll rule, raw / centred); filters ``filter`` (the paper's:
keep iff p(prompt label) > 1/K + T_RE), ``soft`` (keep every row but confident disagreements), ``all``
(keep every row); and ``prompt`` (no relabeling: one-hot prompt labels, every row). Soft labels are
``softmax(-S / tau_RE)`` as in the relabel stage. No SunGen weights: every row may enter the memory bank.
Test sets are the seeded ``--limit`` subsample with ``evaluate.sample_seed=0``; the prediction token limit
is swept with ``--eval-len`` on the same trained model; each record also keeps the share of texts
predicted positive per set (the task model's decision threshold on real text).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
import time
from pathlib import Path

import numpy as np


def score(args: argparse.Namespace) -> None:
    from unigen.config import ScoringConfig
    from unigen.stages import Stage
    from unigen.synth.scoring import FastLMScorer

    rows = list(Stage.load(Path(args.gen_dir), "generate").iter_rows())
    texts = [r["text"] for r in rows]
    scorer = FastLMScorer.from_name(args.scorer, ["negative", "positive"], ScoringConfig(calibrate=False))
    out = {"y": np.array([r["prompt_label"] for r in rows]), "texts": np.array(texts, dtype=object)}
    for rule in args.rules.split(","):
        tic = time.time()
        out[rule] = scorer.scores(texts, rule=rule, progress=True)
        print(f"{rule}: {len(texts)} texts in {time.time() - tic:.0f} s", flush=True)
    out["cf"] = scorer.content_free_scores()
    np.savez(args.output, **out)


def labelling(d: dict, variant: str, n: int, tau: float, threshold: float) -> tuple[list[str], np.ndarray,
                                                                                   np.ndarray, np.ndarray]:
    """``(texts, probs, keep, prompt_labels)`` of a variant on a seeded subset of ``n`` texts (0: all)."""
    from unigen.synth.relabeling import keep_mask, soft_labels

    y_all = d["y"]
    sub = np.sort(np.random.default_rng(0).permutation(len(y_all))[: n or len(y_all)])
    texts, y = [str(t) for t in d["texts"][sub]], y_all[sub]
    if variant == "prompt":
        return texts, np.eye(2)[y], np.ones(len(y), bool), y
    rule, how = variant.split("-", 1)
    raw = {"v": "verbalizer", "vc": "verbalizer", "n": "nll", "nc": "nll"}[rule]
    s = d[raw][sub] - (d["cf"] if rule == "v" else 0.0)
    if rule.endswith("c"):
        s = s - s.mean(axis=0, keepdims=True)
    p = soft_labels(s, tau)
    hard, bar = p.argmax(1), 0.5 + threshold
    keep = {"filter": keep_mask(p, y, threshold), "soft": ~((hard != y) & (p.max(1) > bar)),
            "all": np.ones(len(y), bool)}[how]
    return texts, p, keep, y


def train(args: argparse.Namespace) -> None:
    import torch

    from unigen.config import load_config
    from unigen.evaluation.evaluate import load_eval_sets
    from unigen.tam.train import train_task_model

    d = dict(np.load(args.scores, allow_pickle=True))
    texts, probs, keep, y = labelling(d, args.variant, args.n, args.tau, 0.2)
    rows = [{"text": t, "probs": p.tolist()} for t, p, k in zip(texts, probs, keep) if k]
    hard = probs[keep].argmax(1)
    print(f"{args.variant}: {keep.sum()} of {len(y)} rows kept (negative {int((hard == 0).sum())}, positive "
          f"{int((hard == 1).sum())})", flush=True)
    overrides = [s if s.startswith("train.") else f"train.{s}" for s in args.set]
    cfg = load_config(None, [*overrides, f"seed={args.seed}", "evaluate.sample_seed=0"])
    tic = time.time()
    best = None  # with weight averaging, the same run's best epoch (from its checkpoint), for comparison
    with tempfile.TemporaryDirectory() as tmp:
        workdir = tmp if cfg.train.average_from is not None else None
        result = train_task_model(rows, cfg.train, cfg.labels, seed=cfg.seed, progress=False, workdir=workdir)
        if result.averaged:
            best = torch.load(Path(tmp) / "checkpoint.pt", weights_only=True)["state"]
    record = {"variant": args.variant, "set": args.set, "seed": args.seed, "tau": args.tau,
              "rows": int(keep.sum()), "train_s": round(time.time() - tic, 1),
              "best_epoch": result.best_epoch, "synthetic_valid_acc": round(100 * result.best_valid_acc, 2)}
    model, sets = result.model, load_eval_sets("all", cfg, limit=args.limit)
    if args.save:
        model.save_pretrained(args.save)
    lengths = [int(x) for x in args.eval_len.split(",")]
    probs_out: dict = {}
    record.update(evaluate_at_lengths(model, sets, lengths, probs_out))
    if args.probs:  # per-text positive probabilities, for post-hoc analyses (ensembles, thresholds)
        np.savez(args.probs, **probs_out, **{f"{ds.name}:y": np.asarray(ds.labels) for ds in sets})
    if best is not None:
        model.load_state_dict(best["best_state"])
        record["best_epoch_model"] = {"best_epoch": best["best_epoch"],
                                      "synthetic_valid_acc": round(100 * best["best_acc"], 2),
                                      **evaluate_at_lengths(model, sets, lengths)}
    print(json.dumps(record), flush=True)
    with open(args.log, "a") as f:
        f.write(json.dumps(record) + "\n")


def evaluate_at_lengths(model, sets, lengths: list[int], probs_out: dict | None = None) -> dict:
    """Seven-set mean, per-set accuracy and predicted-positive share at each prediction token limit, by the
    library's :func:`~unigen.evaluation.evaluate.evaluate_classifier`; ``probs_out`` (if given) receives each
    set's positive-class probabilities under ``<set>@<length>``."""
    from unigen.evaluation.evaluate import evaluate_classifier

    class Recording:  # a classifier that keeps each set's probabilities
        name = "task model"

        def __init__(self) -> None:
            self.proba: list[np.ndarray] = []

        def predict_ids(self, texts):
            self.proba.append(np.asarray(model.predict_proba(list(texts), batch_size=64)))
            return self.proba[-1].argmax(axis=1)

    record: dict = {}
    for length in lengths:
        model.spec = dataclasses.replace(model.spec, max_length=length)
        classifier = Recording()
        metrics = evaluate_classifier(classifier, sets)
        accs, pos = {}, {}
        for ds, proba in zip(sets, classifier.proba):
            if probs_out is not None:
                probs_out[f"{ds.name}@{length}"] = proba[:, 1]
            accs[ds.name] = round(100 * metrics[ds.name]["accuracy"], 1)
            pos[ds.name] = round(100 * float(proba.argmax(axis=1).mean()), 1)
        record[f"avg@{length}"] = round(float(np.mean(list(accs.values()))), 2)
        record[f"sets@{length}"] = accs
        record[f"predicted_positive@{length}"] = pos
    return record


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("score")
    p.add_argument("gen_dir")
    p.add_argument("output")
    p.add_argument("--rules", default="verbalizer")
    p.add_argument("--scorer", default="smollm2-135m")
    p.set_defaults(run=score)
    p = sub.add_parser("train")
    p.add_argument("scores")
    p.add_argument("variant")
    p.add_argument("--set", action="append", default=[])
    p.add_argument("--eval-len", default="40,128")
    p.add_argument("--limit", type=int, default=500)
    p.add_argument("--n", type=int, default=0)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--tau", type=float, default=0.1, help="tau_RE of the soft labels")
    p.add_argument("--log", default="relabel_rules.jsonl")
    p.add_argument("--save", help="also save the trained task model into this folder")
    p.add_argument("--probs", help="also save each test text's positive probability (npz) into this file")
    p.set_defaults(run=train)
    args = parser.parse_args(argv)
    args.run(args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
