"""How much of a task model's error on the real sets is its decision threshold (issue 12, quality.md).

For every test set (the seeded ``--limit`` subsample, ``evaluate.sample_seed=0``): accuracy at the model's
own threshold (argmax), the share predicted positive against the true share, the ROC AUC of p(positive),
and two *diagnostic* accuracies that use the test set's labels or its unlabeled texts: the threshold that
predicts the true number of positives (labels: an upper bound of any threshold fix), and the median of the
set's own scores (a balanced-prior assumption on the unlabeled texts). Neither is a setting of the tool.

    python experiments/threshold_probe.py MODEL_DIR [--limit 500] [--output probe.json]
"""

from __future__ import annotations

import argparse
import json

import numpy as np


def probe(model_dir: str, limit: int) -> dict[str, dict[str, float]]:
    from sklearn.metrics import roc_auc_score

    from unigen.config import load_config
    from unigen.evaluation.evaluate import load_eval_sets
    from unigen.tam.model import TaskModel

    model = TaskModel.from_pretrained(model_dir)
    cfg = load_config(None, ["evaluate.sample_seed=0"])
    out = {}
    for ds in load_eval_sets("all", cfg, limit=limit):
        y, p = np.array(ds.labels), model.predict_proba(list(ds.texts))[:, 1]
        k = int(round(y.mean() * len(y)))
        at_true_share = p >= (np.sort(p)[::-1][k - 1] if k else np.inf)
        out[ds.name] = {
            "accuracy": float(((p > 0.5) == y).mean()),
            "predicted_positive": float((p > 0.5).mean()),
            "true_positive": float(y.mean()),
            "auc": float(roc_auc_score(y, p)),
            "accuracy_true_share": float((at_true_share == y).mean()),
            "accuracy_median": float(((p > np.median(p)) == y).mean()),
        }
        print(ds.name, {key: round(v, 3) for key, v in out[ds.name].items()}, flush=True)
    keys = next(iter(out.values())).keys()
    out["mean"] = {key: float(np.mean([r[key] for r in out.values()])) for key in keys}
    print("mean", {key: round(100 * v, 2) for key, v in out["mean"].items()})
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model_dir")
    parser.add_argument("--limit", type=int, default=500)
    parser.add_argument("--output", default=None)
    args = parser.parse_args(argv)
    out = probe(args.model_dir, args.limit)
    if args.output:
        with open(args.output, "w") as f:
            json.dump(out, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
