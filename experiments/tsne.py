"""t-SNE of a task model's contrastive features: synthetic samples (grey) with real test sets (colours).

    python experiments/tsne.py --model RUN/04_train/<fp>/model --synthetic RUN/03_weight/<fp> \
        --sets sst2,amazon,yelp,cr,tweet --per-set 300 --out results/tsne.png

As in the paper's figure (perplexity 30, 1000 iterations). Needs matplotlib.
"""

from __future__ import annotations

import argparse
import random

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True, help="a trained task-model folder")
    ap.add_argument("--synthetic", required=True, help="a finished stage folder with synthetic rows")
    ap.add_argument("--sets", default="sst2,amazon,yelp,cr,tweet")
    ap.add_argument("--per-set", type=int, default=300)
    ap.add_argument("--synthetic-n", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="results/tsne.png")
    args = ap.parse_args()

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.manifold import TSNE

    from unigen.evaluation.datasets import load_dataset
    from unigen.stages import iter_stage_rows
    from unigen.tam.model import TaskModel

    model = TaskModel.from_pretrained(args.model)
    synthetic = [r["text"] for r in iter_stage_rows(args.synthetic) if r.get("keep", True)]
    synthetic = random.Random(args.seed).sample(synthetic, min(args.synthetic_n, len(synthetic)))
    groups = {"synthetic (UniGen)": synthetic}
    for name in args.sets.split(","):
        groups[name] = load_dataset(name, limit=args.per_set, seed=args.seed).texts
    features = np.concatenate([model.embed(texts) for texts in groups.values()])
    points = TSNE(perplexity=30, max_iter=1000, init="pca", random_state=args.seed).fit_transform(features)
    fig, ax = plt.subplots(figsize=(7, 6))
    start = 0
    for i, (name, texts) in enumerate(groups.items()):
        part = points[start: start + len(texts)]
        start += len(texts)
        style = dict(c="lightgrey", s=6, zorder=0) if i == 0 else dict(s=6, alpha=0.7)
        ax.scatter(part[:, 0], part[:, 1], label=f"{name} (n={len(texts)})", **style)
    ax.legend(markerscale=3, fontsize=8)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(f"t-SNE of task-model features ({model.spec.encoder})")
    fig.tight_layout()
    fig.savefig(args.out, dpi=130)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
