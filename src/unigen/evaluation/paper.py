"""The paper's constants: the seven test sets, their domains and short names, and its published numbers.

Every table of accuracies (ours and the paper's) has the columns of :data:`TEST_SETS` plus the plain
average; the paper's rows are tuples in that order (accuracy %, docs/method.md "Results"). Our task
models stand in for the paper's: MiniLM-L6 for DistilBERT, MPNet-base for RoBERTa (:data:`PAPER_SLOT`);
the LSTM has no published row.
"""

from __future__ import annotations

#: test set -> the domain it belongs to, in the paper's column order
SET_DOMAIN: dict[str, str] = {
    "sst2": "movie",
    "imdb": "movie",
    "rotten_tomatoes": "movie",
    "amazon": "products",
    "yelp": "restaurant",
    "cr": "electronics",
    "tweet": "tweet",
}
TEST_SETS: tuple[str, ...] = tuple(SET_DOMAIN)
SHORT_NAMES: dict[str, str] = {
    "sst2": "SST-2",
    "imdb": "IMDB",
    "rotten_tomatoes": "Rotten",
    "amazon": "Amazon",
    "yelp": "Yelp",
    "cr": "CR",
    "tweet": "Tweet",
}
HEADER: tuple[str, ...] = (*(SHORT_NAMES[s] for s in TEST_SETS), "Avg")
#: our task model -> the paper's task model it stands in for
PAPER_SLOT = {"minilm-l6": "distilbert", "mpnet-base": "roberta"}


def _row(*values: float) -> tuple[float, ...]:
    return tuple(values)


#: (tam slot, method, domain) -> 7 accuracies + average (docs/method.md "Results")
PAPER_MAIN: dict[tuple[str, str, str | None], tuple[float, ...]] = {
    ("distilbert", "zerogen", "movie"): _row(80.06, 69.13, 74.73, 73.02, 72.77, 73.59, 74.83, 74.02),
    ("distilbert", "sungen", "movie"): _row(82.43, 70.59, 76.37, 74.13, 73.56, 75.14, 75.96, 75.45),
    ("distilbert", "zerogen", "products"): _row(71.04, 64.99, 65.57, 74.54, 71.89, 74.57, 71.93, 70.65),
    ("distilbert", "sungen", "products"): _row(72.35, 65.95, 66.84, 76.92, 74.98, 75.84, 73.01, 72.27),
    ("distilbert", "zerogen", "restaurant"): _row(77.32, 65.47, 68.86, 74.01, 77.94, 74.89, 73.74, 73.18),
    ("distilbert", "sungen", "restaurant"): _row(78.93, 67.12, 69.92, 74.93, 80.67, 76.06, 75.28, 74.70),
    ("distilbert", "zerogen", "electronics"): _row(73.77, 66.14, 66.78, 72.38, 73.21, 78.82, 74.58, 72.24),
    ("distilbert", "sungen", "electronics"): _row(74.49, 67.19, 68.29, 73.49, 75.34, 80.49, 75.37, 73.52),
    ("distilbert", "zerogen", "tweet"): _row(73.98, 66.58, 67.43, 72.88, 71.86, 75.68, 80.86, 72.75),
    ("distilbert", "sungen", "tweet"): _row(75.12, 67.53, 69.06, 73.64, 72.73, 78.17, 82.46, 74.10),
    ("distilbert", "unigen", None): _row(77.67, 67.81, 73.16, 75.06, 74.81, 79.86, 81.41, 75.68),
    ("roberta", "zerogen", "movie"): _row(84.38, 73.03, 78.38, 77.38, 76.83, 77.36, 77.94, 77.90),
    ("roberta", "sungen", "movie"): _row(85.24, 74.09, 79.19, 78.56, 77.61, 78.21, 79.72, 78.95),
    ("roberta", "zerogen", "products"): _row(79.14, 71.16, 70.92, 79.94, 75.79, 76.35, 80.17, 76.21),
    ("roberta", "sungen", "products"): _row(81.51, 71.28, 72.67, 81.50, 77.76, 78.55, 81.94, 77.87),
    ("roberta", "zerogen", "restaurant"): _row(82.87, 70.71, 69.58, 78.61, 81.47, 76.43, 79.51, 77.03),
    ("roberta", "sungen", "restaurant"): _row(83.65, 71.40, 71.05, 79.42, 82.72, 77.60, 80.92, 78.11),
    ("roberta", "zerogen", "electronics"): _row(76.82, 69.42, 67.89, 75.02, 76.53, 81.24, 76.51, 74.78),
    ("roberta", "sungen", "electronics"): _row(77.51, 71.23, 68.77, 76.91, 78.33, 83.49, 79.03, 76.47),
    ("roberta", "zerogen", "tweet"): _row(78.43, 68.31, 72.25, 78.09, 74.61, 79.08, 82.96, 76.25),
    ("roberta", "sungen", "tweet"): _row(82.19, 70.62, 73.21, 79.84, 76.27, 81.46, 83.25, 78.12),
    ("roberta", "unigen", None): _row(84.86, 72.24, 78.82, 80.79, 79.15, 86.37, 87.89, 81.45),
}
#: the Prompting baseline (GPT2-XL 1.5B prompted with the relabel template), docs/method.md "Results"
PAPER_PROMPTING = _row(82.15, 70.26, 77.56, 79.06, 78.04, 80.30, 80.38, 78.25)
PAPER_ABLATIONS: dict[str, tuple[float, ...]] = {  # DistilBERT, docs/method.md "Results"
    "": PAPER_MAIN[("distilbert", "unigen", None)],
    "hard-relabel": _row(77.18, 67.18, 72.37, 72.91, 72.95, 78.14, 80.39, 74.45),
    "no-relabel": _row(76.34, 66.58, 71.78, 70.63, 70.97, 76.59, 79.62, 73.22),
    "no-denoise-bank": _row(77.06, 67.13, 72.04, 74.69, 73.66, 78.47, 80.84, 74.84),
    "no-scl": _row(75.53, 66.10, 69.63, 71.43, 69.58, 77.22, 79.31, 72.69),
    "combined-prompts": _row(74.19, 63.16, 71.08, 73.62, 72.93, 78.05, 78.02, 73.01),
}
PAPER_ZEROGEN_RELABEL = {  # DistilBERT, movie domain, docs/method.md "Results"
    "none": PAPER_MAIN[("distilbert", "zerogen", "movie")],
    "hard": _row(80.72, 69.25, 73.98, 73.41, 73.18, 73.76, 74.91, 74.17),
    "soft": _row(81.79, 70.40, 75.32, 73.65, 73.31, 74.72, 75.14, 74.90),
}
PAPER_GENERATORS = {
    "gpt2-xl": PAPER_MAIN[("distilbert", "unigen", None)]
}  # the paper's other generators are larger LMs


def set_dict(row: tuple[float, ...]) -> dict[str, float]:
    """A paper row as ``{test set: accuracy %, ..., "average": %}``."""
    return {**dict(zip(TEST_SETS, row)), "average": row[-1]}


def paper_mean(paper: dict[str, float], sets: list[str] | tuple[str, ...]) -> float | None:
    """The paper row's plain mean over exactly ``sets`` (like with like beside our mean over the sets we
    evaluated): its published average when ``sets`` are all seven, ``None`` when one of them is not a set
    the paper reports (a data file of one's own)."""
    if not sets or any(s not in paper or s not in SET_DOMAIN for s in sets):
        return None
    if set(sets) == set(TEST_SETS) and "average" in paper:
        return paper["average"]
    return sum(paper[s] for s in sets) / len(sets)
