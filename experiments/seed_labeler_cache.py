"""Seed a relabel stage's labeler-score cache from a finished ensemble relabel stage's rows, so that another
combination of the same LMs' scores (weights, centring) is relabeled without running the LMs again.

    python experiments/seed_labeler_cache.py runs/frontier/ens-gemma/02_relabel \
        runs/frontier/gemma-c/02_relabel

Each shard's texts are one cached batch (the relabel stage scores a shard at a time); the stored scores are
the rows' ``labeler_scores`` (rounded to 6 decimals when written).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from unigen.files import texts_digest
from unigen.stages import Stage
from unigen.synth.labeler_ensemble import cache_folder_name
from unigen.synth.relabel_stage import LABELER_CACHE


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", help="a finished relabel stage folder run with relabel.labelers")
    parser.add_argument("output", help="the relabel stage folder to be run (its cache is written)")
    args = parser.parse_args()
    n = 0
    source = Stage.load(args.source, "relabel")
    for index in source.shard_indices():
        rows = source.read_shard(index)
        digest = texts_digest([r["text"] for r in rows])
        for name in rows[0]["labeler_scores"]:
            folder = Path(args.output, LABELER_CACHE, cache_folder_name(name))
            folder.mkdir(parents=True, exist_ok=True)
            np.save(folder / f"{digest}.npy", np.array([r["labeler_scores"][name] for r in rows], np.float64))
            n += 1
    print(f"{n} cached batches written under {Path(args.output, LABELER_CACHE)}")


if __name__ == "__main__":
    main()
