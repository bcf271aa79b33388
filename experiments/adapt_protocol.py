"""The two-fold protocol of issue 26: does ``unigen adapt`` make a task model better on a domain's texts?

    PYTHONPATH=src .venv/bin/python experiments/adapt_protocol.py MODEL OUT_DIR \\
        [--sets all] [--half-limit N] [--eval-limit N] [--curve imdb:100,1000,10000] \\
        [--set adapt.KEY=VALUE ...] [--tag NAME] [--report results/adapt.md]

Each test set is split into two fixed seeded halves A and B (``derive_seed(0, "adapt-halves", set)``). The
model is adapted on the **texts** of half A (written to a JSONL file with a ``text`` field only: the labels
never leave this script) and evaluated on half B, then the other way round; the unadapted model is evaluated
on the same halves. Per set and on the mean: the unadapted and adapted accuracy (each the mean of the two
folds) and the gain; the adaptation time per 1,000 texts. ``--curve SET:N1,N2,...``: adapt on the first
``N`` texts of a seeded order of half A and evaluate on half B (``--eval-limit``), for each ``N``.

``--half-limit N`` adapts on at most ``N`` texts of each half (seeded); ``--eval-limit N`` evaluates on at
most ``N`` texts of the other half (seeded), both for speed. Settings are chosen before (defaults or
``--set``), never on these labels. Resumable: every adaptation is a stage folder under
``OUT_DIR/adapt/`` and every finished measurement is kept in ``OUT_DIR/records.json``; a killed run goes on
where it stopped. Writes ``OUT_DIR/adapt.md`` (or ``--report``) and ``OUT_DIR/adapt.png``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from unigen.adaptation.stage import adapt
from unigen.evaluation.datasets import SET_DOMAIN, load_dataset, parse_dataset_names
from unigen.evaluation.evaluate import eval_engine, load_task_model
from unigen.files import atomic_write_json, atomic_write_text
from unigen.seeds import derive_seed


def halves(n: int, name: str) -> tuple[np.ndarray, np.ndarray]:
    """The two fixed seeded halves of a set of ``n`` rows (sorted indices)."""
    perm = np.random.default_rng(derive_seed(0, "adapt-halves", name)).permutation(n)
    return np.sort(perm[: n // 2]), np.sort(perm[n // 2 :])


def capped(index: np.ndarray, limit: int | None, name: str, what: str) -> np.ndarray:
    """At most ``limit`` of ``index`` (a seeded choice, in a seeded order), all when ``limit`` is None."""
    order = np.random.default_rng(derive_seed(0, "adapt-cap", name, what)).permutation(len(index))
    return index[order[:limit] if limit is not None else order]


def write_texts(path: Path, texts: list[str]) -> Path:
    """A JSONL file with a ``text`` field only (no labels)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, "".join(json.dumps({"text": t}, ensure_ascii=False) + "\n" for t in texts))
    return path


def accuracy(model, texts: list[str], labels: np.ndarray, batch_size: int) -> float:
    return float((model.predict_proba(texts, batch_size=batch_size).argmax(1) == labels).mean())


def engine_model(folder: str | Path):
    """A task model with the evaluation engine (``evaluate.engine=auto``: bf16 autocast on a native-bf16
    CPU, as the main job evaluates)."""
    return load_task_model(str(folder), eval_engine("auto", "auto", "transformer"))


class Runner:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.out = Path(args.out)
        self.records_path = self.out / "records.json"
        self.records = json.loads(self.records_path.read_text()) if self.records_path.is_file() else {}
        self.base = None  # loaded when first needed (not when --unadapted-probs answers)
        self.suffix = f"-{args.tag}" if getattr(args, "tag", None) else ""

    def save(self) -> None:
        atomic_write_json(self.records_path, self.records)

    def once(self, key: str, compute) -> dict:
        if key not in self.records:
            self.records[key] = compute()
            self.save()
            print(key, json.dumps(self.records[key]), flush=True)
        return self.records[key]

    def adapt_and_score(
        self,
        key: str,
        name: str,
        texts: list[str],
        adapt_idx: np.ndarray,
        eval_idx: np.ndarray,
        labels: np.ndarray,
    ) -> dict:
        def compute() -> dict:
            stem = key.removesuffix(self.suffix) if self.suffix else key  # a variant reads the same file
            file = write_texts(self.out / "texts" / f"{stem}.jsonl", [texts[i] for i in adapt_idx])
            tic = time.perf_counter()
            folder = adapt(
                self.args.model,
                file,
                output=self.out / "adapt" / key,
                overrides=self.args.overrides,
                progress=not self.args.quiet,
            )
            seconds = time.perf_counter() - tic
            record = json.loads((folder / "unigen_tam.json").read_text())["training"]["adaptation"]
            model = engine_model(folder)
            eval_texts = [texts[i] for i in eval_idx]
            return {
                "set": name,
                "adapt_texts": len(adapt_idx),
                "eval_texts": len(eval_idx),
                "adapted": accuracy(model, eval_texts, labels[eval_idx], self.args.batch_size),
                "seconds": record.get("seconds", seconds),
                "prior": record.get("prior"),
                "share_before": record.get("predicted_share_before"),
                "share_after": record.get("predicted_share_after"),
            }

        return self.once(key, compute)

    def unadapted(self, key: str, name: str, texts: list[str], eval_idx: np.ndarray, labels: np.ndarray
                  ) -> dict:
        def compute() -> dict:
            if self.args.unadapted_probs:  # experiments/full_eval.py's saved probabilities of every text
                probs = np.load(f"{self.args.unadapted_probs}.{name}.npy")
                if len(probs) != len(texts):
                    raise SystemExit(f"{self.args.unadapted_probs}.{name}.npy: {len(probs)} rows, the set "
                                     f"has {len(texts)}")
                return {"unadapted": float((probs[eval_idx].argmax(1) == labels[eval_idx]).mean()),
                        "from": f"{self.args.unadapted_probs}.{name}.npy"}
            self.base = self.base or engine_model(self.args.model)
            return {"unadapted": accuracy(self.base, [texts[i] for i in eval_idx], labels[eval_idx],
                                          self.args.batch_size)}

        return self.once(key, compute)

    def run_set(self, name: str) -> None:
        ds = load_dataset(name)
        texts, labels = list(ds.texts), np.asarray(ds.labels)
        a, b = halves(len(texts), name)
        for fold, (adapt_half, eval_half) in (("AB", (a, b)), ("BA", (b, a))):
            adapt_idx = capped(adapt_half, self.args.half_limit, name, f"adapt-{fold}")
            eval_idx = np.sort(capped(eval_half, self.args.eval_limit, name, f"eval-{fold}"))
            self.unadapted(f"{name}-{fold}-unadapted", name, texts, eval_idx, labels)
            self.adapt_and_score(f"{name}-{fold}{self.suffix}", name, texts, adapt_idx, eval_idx, labels)

    def run_curve(self, spec: str) -> None:
        name, sizes = spec.split(":", 1)
        ds = load_dataset(name)
        texts, labels = list(ds.texts), np.asarray(ds.labels)
        a, b = halves(len(texts), name)
        order = capped(a, None, name, "curve")
        eval_idx = np.sort(capped(b, self.args.eval_limit, name, "eval-AB"))
        self.unadapted(f"{name}-AB-unadapted", name, texts, eval_idx, labels)
        for n in (int(s) for s in sizes.split(",")):
            self.adapt_and_score(f"curve-{name}-{n}{self.suffix}", name, texts, np.sort(order[:n]), eval_idx,
                                 labels)


def report(runner: Runner, sets: list[str], curve: str | None, command: str, png: Path) -> str:
    rec, suffix = runner.records, runner.suffix
    rows, gains, ua, ad, per_1k = [], [], [], [], []
    for name in sets:
        folds = [(rec.get(f"{name}-{f}-unadapted"), rec.get(f"{name}-{f}{suffix}")) for f in ("AB", "BA")]
        if not all(u and d for u, d in folds):
            continue
        u = float(np.mean([x["unadapted"] for x, _ in folds]))
        d = float(np.mean([y["adapted"] for _, y in folds]))
        t = float(np.mean([1000 * y["seconds"] / y["adapt_texts"] for _, y in folds]))
        share = "; ".join(
            f"{100 * y['share_before']['positive']:.0f}->{100 * y['share_after']['positive']:.0f}"
            for _, y in folds
            if y.get("share_before") and "positive" in y["share_before"]
        )
        rows.append(
            f"| {name} | {100 * folds[0][0]['unadapted']:.2f} / {100 * folds[0][1]['adapted']:.2f} | "
            f"{100 * folds[1][0]['unadapted']:.2f} / {100 * folds[1][1]['adapted']:.2f} | {100 * u:.2f} | "
            f"{100 * d:.2f} | {100 * (d - u):+.2f} | {share} | {t:.0f} |"
        )
        gains.append(d - u), ua.append(u), ad.append(d), per_1k.append(t)
    lines = [
        "# `unigen adapt`: the two-fold protocol (issue 26)",
        "",
        f"Command: `{command}`",
        "",
        "Each set split into two fixed seeded halves; adapted on the texts of one half (labels never read), "
        "evaluated on the other, both ways. Accuracy (%), unadapted / adapted per fold, their means, the "
        "gain, "
        "the predicted positive share on the adaptation texts before -> after (%), and the adaptation time "
        "per 1,000 texts (s).",
        "",
        "| set | fold A->B | fold B->A | unadapted | adapted | gain | positive share | s / 1k texts |",
        "|---|---|---|---|---|---|---|---|",
        *rows,
    ]
    if rows:
        lines.append(
            f"| **mean** | | | {100 * np.mean(ua):.2f} | {100 * np.mean(ad):.2f} | "
            f"**{100 * np.mean(gains):+.2f}** | | {np.mean(per_1k):.0f} |"
        )
        lines += ["", f"Worst set: {100 * min(gains):+.2f} points."]
    drawn = None
    if curve:
        name, sizes = curve.split(":", 1)
        base = rec.get(f"{name}-AB-unadapted")
        pts = [(int(n), rec[f"curve-{name}-{n}{suffix}"]) for n in sizes.split(",")
               if f"curve-{name}-{n}{suffix}" in rec]
        if base and pts:
            lines += [
                "",
                f"## Gain against the number of unlabeled texts ({name}, evaluated on half B)",
                "",
                "| texts | unadapted | adapted | gain | seconds |",
                "|---|---|---|---|---|",
            ]
            lines += [
                f"| {n:,} | {100 * base['unadapted']:.2f} | {100 * r['adapted']:.2f} | "
                f"{100 * (r['adapted'] - base['unadapted']):+.2f} | {r['seconds']:.0f} |"
                for n, r in pts
            ]
            drawn = (name, base["unadapted"], pts)
    if rows or drawn:
        plot(png, rows=[(s, u, d) for s, u, d in zip(sets, ua, ad)], curve=drawn)
        lines += ["", f"![adapt]({png.name})"]
    return "\n".join(lines) + "\n"


def plot(path: Path, rows: list, curve: tuple | None) -> None:
    """Each set's gain (adapted - unadapted) against the -1 point floor and, when measured, the
    gain-against-texts curve beside it."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # pragma: no cover
        return
    fig, axes = plt.subplots(1, 2 if curve else 1, figsize=(11, 4) if curve else (6, 4), squeeze=False)
    ax1 = axes[0][0]
    if rows:  # the gain per set, the set's unadapted accuracy under its name
        gains = [100 * (d - u) for _, u, d in rows]
        ax1.bar(np.arange(len(rows)), gains, 0.6, color=["tab:green" if g >= 0 else "tab:red" for g in gains])
        ax1.axhline(0, color="black", linewidth=0.8)
        ax1.axhline(-1, color="gray", linestyle=":", label="-1 point")
        ax1.set_xticks(np.arange(len(rows)), [f"{s}\n{100 * u:.1f}" for s, u, _ in rows], rotation=30)
        ax1.set_ylabel("adapted - unadapted (points)")
        ax1.set_title(f"mean {np.mean(gains):+.2f}")
        ax1.legend()
    if curve:
        draw_curve(axes[0][1], *curve)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def draw_curve(ax, name: str, base: float, pts: list) -> None:
    ax.plot([n for n, _ in pts], [100 * r["adapted"] for _, r in pts], marker="o", label="adapted")
    ax.axhline(100 * base, color="gray", linestyle="--", label="unadapted")
    ax.set_xscale("log")
    ax.set_xlabel(f"unlabeled {name} texts")
    ax.legend()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model")
    p.add_argument("out")
    p.add_argument("--sets", default="all")
    p.add_argument("--half-limit", type=int, default=None)
    p.add_argument("--eval-limit", type=int, default=None)
    p.add_argument("--curve", default=None, help="SET:N1,N2,... (e.g. imdb:100,1000,10000)")
    p.add_argument("--set", dest="overrides", action="append", default=[])
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--report", default=None)
    p.add_argument("--unadapted-probs", default=None, help="OUT_PREFIX of experiments/full_eval.py run on "
                   "MODEL: the unadapted accuracy from its saved probabilities instead of a second pass")
    p.add_argument("--tag", default=None, help="a variant's name (with its --set): its adaptations are "
                   "OUT_DIR/adapt/<set>-<fold>-TAG, siblings of the untagged ones, so the LM's scores of the "
                   "same texts are reused, and the unadapted accuracies are shared")
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)
    sets = [s for s in parse_dataset_names(args.sets) if s in SET_DOMAIN]
    runner = Runner(args)
    for name in sets:
        runner.run_set(name)
    if args.curve:
        runner.run_curve(args.curve)
    target = Path(args.report) if args.report else runner.out / "adapt.md"
    command = " ".join(["python experiments/adapt_protocol.py", *(sys.argv[1:] if argv is None else argv)])
    text = report(runner, sets, args.curve, command, target.with_suffix(".png"))
    atomic_write_text(target, text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
