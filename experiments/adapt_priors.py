"""Issue 26's threshold lever measured for every label-free prior estimate at once, from measurements
already made: the LM's scores that ``experiments/adapt_protocol.py`` kept in each adapt stage
(``lm.json``) and the unadapted model's saved probabilities of every test text (``experiments/full_eval.py``).

    PYTHONPATH=src .venv/bin/python experiments/adapt_priors.py MODEL PROTOCOL_OUT MODEL_PROBS \\
        [--half-limit N] [--eval-limit N] [--report FILE]

For each set and fold (the same halves, adaptation texts and evaluation texts as the protocol run with the
same ``--half-limit`` / ``--eval-limit``): each estimate of ``unigen.adaptation.priors.estimate_prior`` on
the adaptation texts, the offset ``logit_offset`` that moves the model's threshold to it on those texts,
and the accuracy of the moved model on the evaluation half. That is ``adapt.method=prior`` for each
``adapt.prior``, without a model pass (log-probabilities stand for logits: the offset and the argmax are
the same). ``oracle`` (the true share of the adaptation half, read from its labels) is not a method: it is
where the threshold lever stops.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from adapt_protocol import capped, halves  # noqa: E402

from unigen.adaptation.lm_scores import LM_SCORES  # noqa: E402
from unigen.adaptation.priors import PRIORS, estimate_prior, logit_offset, softmax  # noqa: E402
from unigen.adaptation.stage import (  # noqa: E402
    model_record,
    relabel_temperature,
    source_prior,
    task_model_folder,  # noqa: E402
)
from unigen.config import load_config  # noqa: E402
from unigen.evaluation.datasets import SET_DOMAIN, load_dataset  # noqa: E402
from unigen.files import atomic_write_text  # noqa: E402

METHODS = [m for m in PRIORS if m != "none"] + ["oracle"]


def fold_accuracies(probs: np.ndarray, labels: np.ndarray, adapt_idx: np.ndarray, eval_idx: np.ndarray,
                    lm: dict, tau: float, source: np.ndarray) -> dict[str, float]:
    """The unadapted accuracy on ``eval_idx`` and the accuracy after each prior's threshold move."""
    logits = np.log(np.clip(probs[adapt_idx], 1e-12, None))
    eval_logits = np.log(np.clip(probs[eval_idx], 1e-12, None))
    lm_index, lm_probs = np.asarray(lm["index"], dtype=int), softmax(-np.asarray(lm["scores"]), tau)
    out = {"unadapted": float((eval_logits.argmax(1) == labels[eval_idx]).mean())}
    k = probs.shape[1]
    for method in METHODS:
        if method == "oracle":
            prior = np.bincount(labels[adapt_idx], minlength=k) / len(adapt_idx)
        else:
            prior = estimate_prior(method, model_logits=logits, lm_probs=lm_probs, lm_index=lm_index,
                                   source_prior=source)
        delta = logit_offset(logits, prior)
        out[method] = float(((eval_logits + delta).argmax(1) == labels[eval_idx]).mean())
        out[f"{method}_share"] = float(prior[-1])
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model")
    p.add_argument("protocol_out")
    p.add_argument("model_probs")
    p.add_argument("--half-limit", type=int, default=None)
    p.add_argument("--eval-limit", type=int, default=None)
    p.add_argument("--report", default=None)
    args = p.parse_args(argv)
    record = model_record(task_model_folder(args.model))
    cfg = load_config(None, [])
    tau, source = relabel_temperature(cfg, record), source_prior(record, cfg.labels)
    per_set: dict[str, dict[str, float]] = {}
    for name in SET_DOMAIN:
        lm_files = [Path(args.protocol_out) / "adapt" / f"{name}-{f}" / LM_SCORES for f in ("AB", "BA")]
        if not all(f.is_file() for f in lm_files):
            continue
        ds = load_dataset(name)
        labels, probs = np.asarray(ds.labels), np.load(f"{args.model_probs}.{name}.npy")
        a, b = halves(len(labels), name)
        folds = []
        for (fold, (adapt_half, eval_half)), lm_file in zip((("AB", (a, b)), ("BA", (b, a))), lm_files):
            adapt_idx = capped(adapt_half, args.half_limit, name, f"adapt-{fold}")
            eval_idx = np.sort(capped(eval_half, args.eval_limit, name, f"eval-{fold}"))
            lm = json.loads(lm_file.read_text())
            folds.append(fold_accuracies(probs, labels, adapt_idx, eval_idx, lm, tau, source))
        per_set[name] = {key: float(np.mean([f[key] for f in folds])) for key in folds[0]}
    if not per_set:
        raise SystemExit(f"{args.protocol_out}: no set has both folds' {LM_SCORES} yet")
    head = ["unadapted", *METHODS]
    lines = ["| set | " + " | ".join(head) + " | true / agreement / LM positive share |",
             "|---|" + "---|" * (len(head) + 1)]
    for name, r in per_set.items():
        shares = f"{100 * np.mean(np.asarray(load_dataset(name).labels)):.0f} / " \
                 f"{100 * r['agreement_share']:.0f} / {100 * r['lm_share']:.0f}"
        lines.append(f"| {name} | " + " | ".join(f"{100 * r[m]:.2f}" for m in head) + f" | {shares} |")
    means = {m: 100 * np.mean([r[m] for r in per_set.values()]) for m in head}
    worst = {m: 100 * min(r[m] - r["unadapted"] for r in per_set.values()) for m in head}
    lines.append("| **mean** | " + " | ".join(f"**{means[m]:.2f}**" for m in head) + " | |")
    lines.append("| worst set vs unadapted | " + " | ".join(f"{worst[m]:+.2f}" for m in head) + " | |")
    table = "\n".join(lines) + "\n"
    print(table)
    if args.report:
        atomic_write_text(Path(args.report), table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
