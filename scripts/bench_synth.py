"""Throughput and memory of the synthetic-data stages against naive loops; writes results/throughput.json.

Generation: accepted samples/s of the stage's sampler (shared prompt KV cache, per-row early stop)
against Hugging Face ``generate`` on ``batch_size`` copies of the prompt, both followed by the same
post-processing. Relabel: sentences/s of the stage's scorer (length-bucketed batches, last-position
output head) against a per-batch forward loop in input order, for both scoring rules, on the texts
just generated; the scores of both are compared. Both comparisons use one process, model, batch
size and thread count, alternate the two sides and report the median over repetitions. bf16 is
measured too and checked against fp32. Peak RSS comes from child processes (one per stage).

The ctranslate2 backend (:mod:`unigen.ct2_backend`) is a third side of both comparisons, in the same
repetitions against the same naive loops, with the same thread count; its scores and next-token
distributions are checked against fp32 transformers. Its results go to the ``ctranslate2`` section
(other keys of an existing ``--out`` file that this run does not measure, such as ``memory``, are kept).

    PYTHONPATH=src python scripts/bench_synth.py [--samples 96] [--reps 3] [--threads 1] [--rss]
        [--ct2-batch-size 64] [--ct2-compute-type int8] [--ct2-score-compute-types int8,float32] [--no-ct2]
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from unigen.config import ScoringConfig, load_config
from unigen.registry import load_causal_lm
from unigen.synth.ct2_backend import CT2Sampler, CT2Scorer
from unigen.synth.generation import ShardSpec, generate_shard, is_prompt_echo, postprocess
from unigen.synth.sampling import LMSampler, SamplingSettings, filtered_distribution, naive_generate
from unigen.synth.scoring import FastLMScorer

LABELS = ("negative", "positive")
PROMPTS = [f'The text in {w} sentiment is: "' for w in LABELS]
STEMS = [p[: -len(': "')] for p in PROMPTS]


def median_rate(pairs: list[tuple[float, float]]) -> float:
    return statistics.median(n / s for n, s in pairs)


# ---------------------------------------------------------------- generation

def bench_generation(model, tok, args) -> tuple[dict, list[dict]]:
    settings = SamplingSettings()
    ours, ours_bf16 = LMSampler(model, tok, settings, args.batch_size), None
    if args.bf16:
        ours_bf16 = LMSampler(copy.deepcopy(model).to(torch.bfloat16), tok, settings, args.batch_size)
    ct2 = None
    if args.ct2:
        ct2 = CT2Sampler("smollm2-135m", settings, args.ct2_batch_size, compute_type=args.ct2_compute_type,
                         threads=args.threads, tokenizer=tok)
    res: dict[str, list] = {"naive": [], "ours": [], "bf16": [], "ct2": [], "naive_tok": [], "ours_tok": [],
                            "ct2_tok": []}
    rows: list[dict] = []
    for rep in range(args.reps):
        label = rep % 2
        prompt = PROMPTS[label]
        spec = ShardSpec(rep, label, label, "universal", prompt, args.samples, 1000 + rep)
        sides = ["naive", "ours"] + (["bf16"] if ours_bf16 else []) + (["ct2"] if ct2 else [])
        for side in sides if rep % 2 == 0 else sides[::-1]:
            t0 = time.perf_counter()
            if side == "naive":
                torch.manual_seed(rep)
                conts = naive_generate(model, tok, prompt, args.samples, settings, args.batch_size)
                dt = time.perf_counter() - t0
                texts = {
                    t
                    for t, _ in map(postprocess, (c.text for c in conts))
                    if t and not is_prompt_echo(t, STEMS)
                }
                res["naive"].append((len(texts), dt))
                res["naive_tok"].append((sum(c.n_tokens for c in conts), dt))
            else:
                sampler = {"ours": ours, "bf16": ours_bf16, "ct2": ct2}[side]
                before = sampler.tokens_generated
                out, _ = generate_shard(sampler, spec, prompt_set="universal", stems=STEMS, seen=set(),
                                        chunk=args.ct2_batch_size if side == "ct2" else args.batch_size)
                dt = time.perf_counter() - t0
                res[side].append((len(out), dt))
                if side in ("ours", "ct2"):
                    res[f"{side}_tok"].append((sampler.tokens_generated - before, dt))
                if side == "ours":
                    rows.extend(out)
        print(
            f"  generation rep {rep}: "
            + ", ".join(f"{k} {v[-1][0] / v[-1][1]:.2f}/s" for k, v in res.items() if v),
            flush=True,
        )
    naive_r, ours_r = median_rate(res["naive"]), median_rate(res["ours"])
    out = {
        "naive_samples_per_s": round(naive_r, 3),
        "unigen_samples_per_s": round(ours_r, 3),
        "speedup": round(ours_r / naive_r, 2),
        "naive_tokens_per_s": round(median_rate(res["naive_tok"]), 1),
        "unigen_tokens_per_s": round(median_rate(res["ours_tok"]), 1),
        "tokens_note": "naive samples all max_new_tokens tokens per row; ours stops a row at its first "
        "quote/newline/EOS token (post-processing cuts there anyway)",
        "batch_size": args.batch_size,
        "samples_per_rep": args.samples,
        "reps": args.reps,
        "precision": "fp32",
    }
    if ours_bf16:
        bf = median_rate(res["bf16"])
        out.update(unigen_bf16_samples_per_s=round(bf, 3), bf16_speedup=round(bf / naive_r, 2),
                   bf16_check=bf16_generation_check(model, ours_bf16.model, tok, rows[:24], settings))
    if ct2:
        c = median_rate(res["ct2"])
        out["ctranslate2"] = {
            "samples_per_s": round(c, 3),
            "speedup_vs_naive": round(c / naive_r, 2),
            "speedup_vs_unigen_fp32": round(c / ours_r, 2),
            "tokens_per_s": round(median_rate(res["ct2_tok"]), 1),
            "batch_size": args.ct2_batch_size,
            "compute_type": args.ct2_compute_type,
            "intra_threads": args.threads,
            "inter_threads": 1,
            "distribution_check": ct2_generation_check(model, ct2, tok, rows[:24]),
        }
    return out, rows


@torch.inference_mode()
def ct2_generation_check(model, sampler, tok, rows) -> dict:
    """Teacher-forced next-token distributions of fp32 transformers vs the ctranslate2 model along fp32
    samples."""
    gen = sampler.model.load()
    kl, top1 = [], []
    for r in rows:
        pid = tok(r["prompt"])["input_ids"]
        ids = pid + tok(r["text"], add_special_tokens=False)["input_ids"]
        a = model(input_ids=torch.tensor([ids])).logits[0, len(pid) - 1:].float().log_softmax(-1)
        b = torch.from_numpy(np.asarray(gen.forward_batch([ids], return_log_probs=True))[0, len(pid) - 1:])
        b = b[:, : a.shape[-1]].float()
        kl.append((a.exp() * (a - b)).sum(-1))
        top1.append((a.argmax(-1) == b.argmax(-1)).float())
    k = torch.cat(kl)
    return {
        "positions": len(k),
        "kl_full_mean": round(k.mean().item(), 5),
        "kl_full_p95": round(k.quantile(0.95).item(), 5),
        "top1_agreement": round(torch.cat(top1).mean().item(), 4),
    }


@torch.inference_mode()
def bf16_generation_check(model, model_bf16, tok, rows, settings) -> dict:
    """Teacher-forced next-token distributions of fp32 vs bf16 along fp32 samples."""
    kl, tv = [], []
    for r in rows:
        pid = tok(r["prompt"])["input_ids"]
        ids = torch.tensor([pid + tok(r["text"], add_special_tokens=False)["input_ids"]])
        a = model(input_ids=ids).logits[0, len(pid) - 1:].float()
        b = model_bf16(input_ids=ids).logits[0, len(pid) - 1:].float()
        la, lb = a.log_softmax(-1), b.log_softmax(-1)
        kl.append((la.exp() * (la - lb)).sum(-1))
        for i in range(len(a)):
            da, db = torch.zeros(a.shape[-1]), torch.zeros(a.shape[-1])
            ia, pa = filtered_distribution(a[i: i + 1], settings)
            ib, pb = filtered_distribution(b[i: i + 1], settings)
            da[ia[0]], db[ib[0]] = pa[0], pb[0]
            tv.append(0.5 * (da - db).abs().sum())
    k, t = torch.cat(kl), torch.stack(tv)
    return {
        "positions": len(t),
        "kl_full_mean": round(k.mean().item(), 5),
        "tv_filtered_mean": round(t.mean().item(), 4),
        "tv_filtered_p95": round(t.quantile(0.95).item(), 4),
    }


# ---------------------------------------------------------------- relabel

@torch.inference_mode()
def naive_scores(model, tok, texts: list[str], rule: str, cfg: ScoringConfig, bs: int) -> np.ndarray:
    """Per-batch forward loop in input order, full logits, right padding (the baseline)."""
    tok.padding_side = "right"
    label_ids = [tok(" " + w, add_special_tokens=False)["input_ids"][0] for w in LABELS]
    out = []
    for s in range(0, len(texts), bs):
        chunk = texts[s: s + bs]
        if rule == "verbalizer":
            enc = tok(
                [cfg.verbalizer_template.format(text=x) for x in chunk], return_tensors="pt", padding=True
            )
            logits = model(**enc).logits
            last = enc["attention_mask"].sum(1) - 1
            logp = logits[torch.arange(len(chunk)), last].float().log_softmax(-1)
            out.append((-logp[:, label_ids]).numpy())
        else:
            enc = tok(
                [cfg.template.format(label=w, text=x) for x in chunk for w in LABELS],
                return_tensors="pt",
                padding=True,
            )
            logits = model(**enc).logits[:, :-1].float()
            mask = enc["attention_mask"][:, 1:].float()
            nll = F.cross_entropy(logits.transpose(1, 2), enc["input_ids"][:, 1:], reduction="none")
            out.append(((nll * mask).sum(1) / mask.sum(1)).reshape(-1, len(LABELS)).numpy())
    return np.concatenate(out)


def bench_relabel(model, tok, texts: list[str], args) -> dict:
    cfg = ScoringConfig(batch_size=args.score_batch_size)
    per_rule = {}
    ct2 = {}
    if args.ct2:
        ct2 = {
            f"ct2:{ct}": CT2Scorer(
                "smollm2-135m",
                LABELS,
                ScoringConfig(batch_size=args.ct2_score_batch_size),
                compute_type=ct,
                threads=args.threads,
                tokenizer=tok,
            )
            for ct in args.ct2_score_compute_types.split(",")
        }
    for rule in ("verbalizer", "nll"):
        fast = FastLMScorer(model, tok, LABELS, cfg)
        fast.content_free_scores()
        cal = fast.content_free_scores() if rule == "verbalizer" else 0.0
        naive_t, ours_t, diff = [], [], 0.0
        ct2_t: dict[str, list] = {side: [] for side in ct2}
        ct2_scores: dict[str, np.ndarray] = {}
        sides = ("naive", "ours", *ct2)
        for rep in range(args.reps):
            for side in sides if rep % 2 == 0 else sides[::-1]:
                t0 = time.perf_counter()
                if side == "naive":
                    a = naive_scores(model, tok, texts, rule, cfg, args.score_batch_size) - cal
                    naive_t.append((len(texts), time.perf_counter() - t0))
                elif side == "ours":
                    b = fast.scores(texts, rule=rule)
                    ours_t.append((len(texts), time.perf_counter() - t0))
                else:
                    ct2_scores[side] = ct2[side].scores(texts, rule=rule)
                    ct2_t[side].append((len(texts), time.perf_counter() - t0))
            diff = max(diff, float(np.abs(a - b).max()))
            print(f"  relabel {rule} rep {rep}: naive {len(texts) / naive_t[-1][1]:.2f}/s "
                  f"ours {len(texts) / ours_t[-1][1]:.2f}/s"
                  + "".join(f" {k} {len(texts) / v[-1][1]:.2f}/s" for k, v in ct2_t.items()), flush=True)
        n_r, o_r = median_rate(naive_t), median_rate(ours_t)
        per_rule[rule] = {"naive_sentences_per_s": round(n_r, 3), "unigen_sentences_per_s": round(o_r, 3),
                          "speedup": round(o_r / n_r, 2), "max_abs_score_diff_vs_naive": diff}
        if ct2:
            per_rule[rule]["ctranslate2"] = {}
            for side, times in ct2_t.items():
                c_r = median_rate(times)
                per_rule[rule]["ctranslate2"][side.split(":")[1]] = {
                    "sentences_per_s": round(c_r, 3), "speedup_vs_naive": round(c_r / n_r, 2),
                    "speedup_vs_unigen_fp32": round(c_r / o_r, 2), **score_agreement(b, ct2_scores[side])}
        if args.bf16:
            per_rule[rule]["bf16_check"] = bf16_score_check(model, tok, texts, rule, cfg, b)
    head = {k: v for k, v in per_rule["verbalizer"].items() if k != "ctranslate2"}
    return {**head, "rule": "verbalizer", "per_rule": per_rule, "texts": len(texts),
            "batch_size": args.score_batch_size, "reps": args.reps,
            "note": "headline = the verbalizer rule, the one the auto choice picks with SmolLM2-135M"}


def score_agreement(ref: np.ndarray, b: np.ndarray) -> dict:
    """How far scores ``b`` are from fp32 ``ref``, and what that does to relabel decisions (tau_RE = 0.1)."""
    p_ref = 1 / (1 + np.exp(-(ref[:, 0] - ref[:, 1]) / 0.1))
    p_b = 1 / (1 + np.exp(-(b[:, 0] - b[:, 1]) / 0.1))

    def keep(p: np.ndarray) -> np.ndarray:
        return (p > 0.7) | (p < 0.3)

    return {
        "max_abs_score_diff": round(float(np.abs(ref - b).max()), 4),
        "max_abs_margin_diff": round(float(np.abs((ref[:, 0] - ref[:, 1]) - (b[:, 0] - b[:, 1])).max()), 4),
        "argmax_agreement": round(float((ref.argmin(1) == b.argmin(1)).mean()), 4),
        "max_abs_soft_label_diff": round(float(np.abs(p_ref - p_b).max()), 4),
        "filter_decision_agreement": round(float((keep(p_ref) == keep(p_b)).mean()), 4),
    }


def bf16_score_check(model, tok, texts, rule, cfg, ref: np.ndarray) -> dict:
    s = FastLMScorer(copy.deepcopy(model).to(torch.bfloat16), tok, LABELS, cfg)
    t0 = time.perf_counter()
    b = s.scores(texts, rule=rule)
    rate = len(texts) / (time.perf_counter() - t0)
    p_ref = 1 / (1 + np.exp(-(ref[:, 0] - ref[:, 1]) / 0.1))
    p_b = 1 / (1 + np.exp(-(b[:, 0] - b[:, 1]) / 0.1))

    def keep(p: np.ndarray) -> np.ndarray:
        return (p > 0.7) | (p < 0.3)

    return {"sentences_per_s": round(rate, 3), "max_abs_score_diff": round(float(np.abs(ref - b).max()), 4),
            "argmax_agreement": round(float((ref.argmin(1) == b.argmin(1)).mean()), 4),
            "max_abs_soft_label_diff": round(float(np.abs(p_ref - p_b).max()), 4),
            "filter_decision_agreement": round(float((keep(p_ref) == keep(p_b)).mean()), 4),
            "verdict": "not used: tau_RE = 0.1 amplifies the bf16 score error into soft-label changes"}


# ---------------------------------------------------------------- memory (child processes)

def rss_child(kind: str, stage: str, per_label: int, workdir: str, threads: int) -> dict:
    """Run one stage in this (fresh) process and return its peak RSS."""
    torch.set_num_threads(threads)
    from unigen.synth.generate_stage import generate_stage
    from unigen.synth.relabel_stage import relabel_stage

    cfg = load_config(None, [f"generate.samples_per_label={per_label}", "relabel.scoring_rule=verbalizer"])
    kw: dict = {}
    if kind == "fake":  # the stage machinery alone (what grows with the row count)
        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
        from synth_fakes import FakeScorer

        kw = {"sampler": _UniqueFake()} if stage == "generate" else {"scorer": FakeScorer(LABELS)}
    t0 = time.time()
    gen = generate_stage(cfg, workdir, progress=False, **(kw if stage == "generate" else {}))
    if stage == "relabel":
        relabel_stage(cfg, workdir, gen, progress=False, **kw)
    return {"kind": kind, "stage": stage, "rows": 2 * per_label, "seconds": round(time.time() - t0, 1),
            "peak_rss_mb": peak_rss_mb()}


def peak_rss_mb() -> float:
    """Peak RSS of this process image (``VmHWM``; ``ru_maxrss`` would carry the parent's peak over exec)."""
    try:
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


class _UniqueFake:
    """A sampler whose every row is a distinct ~15-word text (so de-duplication keeps them all)."""

    def sample(self, prompt, seeds):
        from unigen.synth.sampling import Continuation

        word = prompt.split(" in ")[1].split(" ")[0]
        return [Continuation(f"a {word} text number {s % 10 ** 12} about things and places we liked or not",
                             16) for s in seeds]


def bench_memory(args) -> dict:
    runs = []
    plan = [("real", "generate", args.rss_per_label), ("real", "relabel", args.rss_per_label)]
    plan += [("fake", st, n) for n in (500, 50_000) for st in ("generate", "relabel")]
    with tempfile.TemporaryDirectory() as tmp:
        for kind, stage, n in plan:
            workdir = os.path.join(tmp, f"{kind}-{n}")
            cmd = [sys.executable, __file__, "--rss-child", kind, stage, str(n), workdir, str(args.threads)]
            res = subprocess.run(cmd, capture_output=True, text=True, env=os.environ.copy())
            if res.returncode:
                raise RuntimeError(res.stderr[-2000:])
            runs.append(json.loads(res.stdout.strip().splitlines()[-1]))
            print(f"  rss {runs[-1]}", flush=True)
    return {
        "runs": runs,
        "note": "peak RSS (VmHWM) of one fresh process per stage; 'real' = SmolLM2-135M fp32, "
        "'fake' = the stage machinery with a fake LM, 1k vs 100k rows (rows stream shard by shard; "
        "what grows is the 8-byte-per-row de-duplication/statistics key set)",
    }


# ---------------------------------------------------------------- main

def machine(threads: int) -> str:
    cpu = platform.processor() or "cpu"
    try:
        cpu = next(
            line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")
        )
    except (OSError, StopIteration):
        pass
    load = os.getloadavg()[0]
    return (f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__}, {threads} thread(s); SHARED machine: "
            f"other jobs were running (load average {load:.1f} at the end), so absolute rates are noisy; "
            "naive and unigen sides alternate within each repetition, medians reported")


def ct2_summary(gen: dict, rel: dict, args) -> dict:
    """The ctranslate2 ratios against the naive loops of this run (targets of issue 12: >= 5x and >= 3x)."""
    import ctranslate2

    g = gen["ctranslate2"]
    r = {rule: rel["per_rule"][rule]["ctranslate2"] for rule in ("verbalizer", "nll")}
    return {
        "generation_speedup_vs_naive": g["speedup_vs_naive"],
        "relabel_speedup_vs_naive": {ct: v["speedup_vs_naive"] for ct, v in r["verbalizer"].items()},
        "relabel_nll_speedup_vs_naive": {ct: v["speedup_vs_naive"] for ct, v in r["nll"].items()},
        "targets": {"generation": 5.0, "relabel": 3.0},
        "generation": g,
        "relabel": r,
        "version": ctranslate2.__version__,
        "settings": {
            "generate_batch_size": args.ct2_batch_size,
            "generate_compute_type": args.ct2_compute_type,
            "score_batch_size": args.ct2_score_batch_size,
            "score_compute_types": args.ct2_score_compute_types.split(","),
            "intra_threads": args.threads,
            "inter_threads": 1,
        },
        "note": "same run, same naive Hugging Face loops and thread count as the generation/relabel "
        "sections; "
        "relabel headline = the verbalizer rule; every generate_batch call loads a fresh Generator "
        "(reproducibility per seed), included in the time; " + machine(args.threads),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=96, help="accepted samples per generation repetition")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--score-batch-size", type=int, default=16)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--no-bf16", dest="bf16", action="store_false")
    ap.add_argument("--no-ct2", dest="ct2", action="store_false", help="skip the ctranslate2 backend")
    ap.add_argument("--ct2-batch-size", type=int, default=64, help="rows per ctranslate2 generate_batch call")
    ap.add_argument("--ct2-compute-type", default="int8", help="ctranslate2 compute type for generation")
    ap.add_argument("--ct2-score-compute-types", default="int8,float32",
                    help="ctranslate2 compute types for scoring (comma-separated, each measured)")
    ap.add_argument("--ct2-score-batch-size", type=int, default=32)
    ap.add_argument("--rss", action="store_true", help="also measure peak RSS in child processes")
    ap.add_argument("--rss-per-label", type=int, default=500)
    ap.add_argument("--out", default="results/throughput.json")
    ap.add_argument("--rss-only", action="store_true", help="only (re)measure memory into an existing --out")
    ap.add_argument("--rss-child", nargs=5, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.rss_only:
        out = json.loads(Path(args.out).read_text())
        out["memory"] = bench_memory(args)
        Path(args.out).write_text(json.dumps(out, indent=1) + "\n")
        print(json.dumps(out["memory"], indent=1))
        return
    if args.rss_child:
        kind, stage, n, workdir, threads = args.rss_child
        print(json.dumps(rss_child(kind, stage, int(n), workdir, int(threads))))
        return
    torch.set_num_threads(args.threads)
    model, tok = load_causal_lm("smollm2-135m")
    print("generation ...", flush=True)
    gen, rows = bench_generation(model, tok, args)
    print("relabel ...", flush=True)
    rel = bench_relabel(model, tok, [r["text"] for r in rows][: args.samples * 2], args)
    out = json.loads(Path(args.out).read_text()) if Path(args.out).is_file() else {}
    out.update(generation=gen, relabel=rel, model="smollm2-135m (fp32)", machine=machine(args.threads))
    if args.ct2:
        out["ctranslate2"] = ct2_summary(gen, rel, args)
    if args.rss:
        del model
        print("memory ...", flush=True)
        out["memory"] = bench_memory(args)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
