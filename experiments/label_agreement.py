"""How clean are the synthetic labels? VADER's polarity against each stage's training labels.

    python experiments/label_agreement.py --workdir runs/paper --out results/label_agreement.md

For every finished generate stage (labels = prompt labels) and relabel stage (kept rows, labels = the
relabeled argmax), the share of texts VADER decides (|compound| >= 0.05) and, among those, the share whose
polarity matches the label. VADER is a fixed lexicon that never saw our data or the test sets, so this is an
outside, label-free proxy for label noise; it is only a proxy (VADER itself is 68.8% accurate on the test
sets).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from unigen.files import atomic_write_text


def agreement(texts: list[str], labels: list[int], threshold: float = 0.05) -> tuple[float, float]:
    """(share of texts VADER decides, agreement of VADER's polarity with ``labels`` among those)."""
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    sia = SentimentIntensityAnalyzer()
    decided = [
        (c > 0) == (y == 1)
        for c, y in ((sia.polarity_scores(t)["compound"], y) for t, y in zip(texts, labels))
        if abs(c) >= threshold
    ]
    return len(decided) / max(1, len(texts)), sum(decided) / max(1, len(decided))


def stage_rows(stage: Path) -> list[dict]:
    """The rows of a finished stage folder, checked against its manifest (``Stage.load``)."""
    from unigen.stages import iter_stage_rows

    return list(iter_stage_rows(stage))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workdir", default="runs/paper")
    ap.add_argument("--out", default="results/label_agreement.md")
    args = ap.parse_args()
    work = Path(args.workdir)
    manifests = {m.parent.name: json.loads(m.read_text()) for m in work.glob("0[12]_*/*/manifest.json")}
    lines = ["| stage | generator | prompt set | seed | relabel | rows | VADER decides | VADER agrees |",
             "|---|---|---|---|---|---|---|---|"]
    for fp, m in sorted(manifests.items(), key=lambda kv: (kv[1]["stage"], json.dumps(kv[1]["config"]))):
        if m.get("status") != "complete":
            continue
        stage = next(work.glob(f"0[12]_*/{fp}"))
        rows = stage_rows(stage)
        if m["stage"] == "relabel":
            gen = manifests.get(m["upstream"]["generate"], {}).get("config", {})
            rows = [r for r in rows if r.get("keep", True)]
            mode = m["config"]["relabel"]["mode"]
        else:
            gen, mode = m["config"], "-"
        if m["stage"] == "relabel" and mode == "none":
            continue  # the same rows as its generate stage
        labels = [r.get("label", r.get("prompt_label")) for r in rows]
        decided, agree = agreement([r["text"] for r in rows], labels)
        gen_cfg = gen.get("generate", {})
        prompt_set = gen_cfg.get("prompt_set", "?") + (
            f", {gen_cfg['min_words']}+ words" if gen_cfg.get("min_words") else ""
        )
        lines.append(f"| {m['stage']} `{fp}` | {gen.get('generator', '?')} | {prompt_set}"
                     f" | {m['seed']} | {mode} | {len(rows)} | {100 * decided:.0f}% | {100 * agree:.1f}% |")
    text = (
        "# Label agreement of the synthetic data with VADER\n\n"
        + __doc__.split("\n\n", 2)[2].strip()
        + "\n\nCommand: `python experiments/label_agreement.py "
        + f"--workdir {args.workdir} --out {args.out}`\n\n"
        + "\n".join(lines)
        + "\n"
    )
    atomic_write_text(args.out, text)
    print(text)


if __name__ == "__main__":
    main()
