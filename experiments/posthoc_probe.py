"""Label-free decision rules applied after training, on saved test-set probabilities (results/quality.md).

Input: runs of ``experiments/relabel_rules.py train ... --save MODEL --probs PROBS.npz`` (each test text's
positive-class probability on the seeded 500-row subsamples), grouped by generation::

    python experiments/posthoc_probe.py --scores g42=s42.npz --run g42:MODEL_A:PROBS_A.npz
        --run g42:MODEL_B:PROBS_B.npz ... [--length 128] [--soup]

For every run it reports the seven-set mean accuracy of

* ``as is``: the label of highest probability (the paper);
* ``prior-corrected``: the posterior under a uniform class prior instead of the training rows' prior,
  ``logit'(x) = logit(x) - log(n_pos / n_neg)`` (Saerens et al. 2002; logit adjustment, Menon et al. 2021),
  with ``n_pos / n_neg`` the kept rows' hard labels under ``--variant`` of the group's ``--scores`` file;
* ``content-free``: the task model's own probabilities on content-free inputs (``""``, ``"N/A"``, ``"."``)
  divided out, ``p'(y|x) ∝ p(y|x) / mean_cf p(y|cf)`` (Zhao et al. 2021, as the relabeler calibrates the LM);

and, per generation, the prediction ensemble of its runs (mean probability) and, with ``--soup``, the
uniform weight average of its runs' models (evaluated afresh). No test label is used to set anything:
the labels only score the rules.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

CONTENT_FREE = ["", "N/A", "."]
sys.path.insert(0, str(Path(__file__).parent))


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-7, 1 - 1e-7)
    return np.log(p) - np.log1p(-p)


def set_names(probs: dict, length: int) -> list[str]:
    return sorted(k.split("@")[0] for k in probs if k.endswith(f"@{length}"))


def mean_accuracy(probs: dict, length: int, shift: float = 0.0) -> tuple[float, dict, dict]:
    """Seven-set mean accuracy of ``logit(p) - shift > 0``, per-set accuracies and positive shares."""
    accs, pos = {}, {}
    for name in set_names(probs, length):
        pred = (_logit(probs[f"{name}@{length}"]) - shift > 0).astype(int)
        accs[name] = round(100 * float((pred == probs[f"{name}:y"]).mean()), 1)
        pos[name] = round(100 * float(pred.mean()), 1)
    return round(float(np.mean(list(accs.values()))), 2), accs, pos


def training_prior_shift(scores_file: str, variant: str) -> float:
    """``log(n_pos / n_neg)`` of the kept rows' hard labels under ``variant`` of ``relabel_rules.py``."""
    from relabel_rules import labelling

    _, probs, keep, _ = labelling(dict(np.load(scores_file, allow_pickle=True)), variant, 0, 0.1, 0.2)
    hard = probs[keep].argmax(1)
    return float(np.log((hard == 1).sum() / (hard == 0).sum()))


def content_free_shift(model) -> float:
    """``logit`` of the task model's mean positive probability on content-free inputs."""
    p = np.asarray(model.predict_proba(CONTENT_FREE))[:, 1].mean()
    return float(_logit(np.array(p)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", action="append", required=True, help="GROUP:MODEL_DIR:PROBS.npz")
    parser.add_argument("--scores", action="append", required=True,
                        help="GROUP=SCORES.npz: the relabel_rules.py scores a group's runs trained on")
    parser.add_argument("--variant", default="v-filter", help="the labelling they trained on")
    parser.add_argument("--length", type=int, default=128)
    parser.add_argument("--soup", action="store_true", help="also evaluate each group's weight average")
    parser.add_argument("--limit", type=int, default=500)
    args = parser.parse_args(argv)

    from unigen.tam.model import TaskModel

    scores = dict(s.split("=", 1) for s in args.scores)
    groups: dict[str, list] = defaultdict(list)
    for spec in args.run:
        group, model_dir, probs_file = spec.split(":")
        probs = dict(np.load(probs_file))
        model = TaskModel.from_pretrained(model_dir)
        shifts = {"as is": 0.0, "prior-corrected": training_prior_shift(scores[group], args.variant),
                  "content-free": content_free_shift(model)}
        row = {"group": group, "run": Path(model_dir).name}
        for rule, shift in shifts.items():
            row[rule], row[f"{rule} sets"], row[f"{rule} positive"] = mean_accuracy(probs, args.length, shift)
            row[f"{rule} shift"] = round(shift, 3)
        groups[group].append((model, probs))
        print(json.dumps(row), flush=True)

    for group, members in groups.items():
        keys = [k for k in members[0][1] if k.endswith(f"@{args.length}")]
        ensemble = {k: np.mean([m[1][k] for m in members], axis=0) for k in keys}
        ensemble.update({k: v for k, v in members[0][1].items() if k.endswith(":y")})
        acc, sets, pos = mean_accuracy(ensemble, args.length)
        print(json.dumps({"group": group, "ensemble": acc, "sets": sets, "positive": pos}), flush=True)
        if args.soup:
            print(json.dumps({"group": group, "soup": _soup(members, args)}), flush=True)
    return 0


def _soup(members: list, args: argparse.Namespace) -> dict:
    """Uniform average of the members' weights (the first member's model is overwritten), evaluated on the
    same subsamples as ``relabel_rules.py`` evaluates."""
    import torch
    from relabel_rules import evaluate_at_lengths

    from unigen.config import load_config
    from unigen.evaluation.evaluate import load_eval_sets

    soup = members[0][0]
    states = [m[0].state_dict() for m in members]
    with torch.no_grad():
        soup.load_state_dict({k: sum(s[k] for s in states) / len(states) if v.is_floating_point() else v
                              for k, v in states[0].items()})
    sets = load_eval_sets("all", load_config(None, ["evaluate.sample_seed=0"]), limit=args.limit)
    record = evaluate_at_lengths(soup, sets, [args.length])
    return {"acc": record[f"avg@{args.length}"], "sets": record[f"sets@{args.length}"],
            "positive": record[f"predicted_positive@{args.length}"]}


if __name__ == "__main__":
    raise SystemExit(main())
