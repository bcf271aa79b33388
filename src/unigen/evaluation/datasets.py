"""Datasets: the seven real test sets (and three validation sets) by name, or any JSONL/CSV file.

Rows are plain dicts ``{"text": str, "label": int}`` with 1 = positive, 0 = negative. The sets are
read from ``../shared/datasets`` next to the project, or from ``$UNIGEN_DATA``, or from an explicit
folder. Malformed files fail with :class:`DataError` naming the file and line.
"""

from __future__ import annotations

import csv
import os
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from unigen.errors import DataError, short_repr
from unigen.evaluation.paper import SET_DOMAIN, TEST_SETS
from unigen.files import MAX_LINE_BYTES, check_unicode, iter_jsonl

VALIDATION_SETS: tuple[str, ...] = ("sst2", "rotten_tomatoes", "tweet")


@dataclass(frozen=True)
class Dataset:
    name: str
    domain: str
    texts: list[str] = field(repr=False)
    labels: list[int] = field(repr=False)
    source: str = ""
    subsampled_from: int | None = None  # original size when a --limit subsample was taken

    def __len__(self) -> int:
        return len(self.texts)


def default_data_dir() -> Path:
    """``$UNIGEN_DATA``, else ``../shared/datasets`` beside the project root (or the working directory)."""
    env = os.environ.get("UNIGEN_DATA")
    if env:
        return Path(env)
    project_root = Path(__file__).resolve().parents[3]  # src/unigen/evaluation/datasets.py -> the project
    for base in (project_root, Path.cwd()):
        candidate = base.parent / "shared" / "datasets"
        if candidate.is_dir():
            return candidate
    return project_root.parent / "shared" / "datasets"


def _parse_label(value: object, where: str, label_names: Sequence[str]) -> int:
    if isinstance(value, bool):
        raise DataError(
            f"{where}: label must be an integer class id or a label name, got {short_repr(value)}")
    if isinstance(value, int):
        label = value
    elif isinstance(value, str) and value.strip().lstrip("-").isdigit():
        label = int(value.strip())
    elif isinstance(value, str) and value.strip().lower() in label_names:
        label = list(label_names).index(value.strip().lower())
    else:
        raise DataError(
            f"{where}: label {short_repr(value)} is not a class id or one of {', '.join(label_names)}")
    if not 0 <= label < len(label_names):
        raise DataError(f"{where}: label {label} is outside 0..{len(label_names) - 1}")
    return label


def _check_text(value: object, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise DataError(f"{where}: text must be a non-empty string, got {short_repr(value)}")
    return check_unicode(value, where)


def read_rows(path: str | Path, *, text_field: str = "text", label_field: str = "label",
              label_names: Sequence[str] = ("negative", "positive")) -> tuple[list[str], list[int]]:
    """Read a ``.jsonl`` or ``.csv`` file of labelled texts; errors name the file and line."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    texts: list[str] = []
    labels: list[int] = []
    names = [n.lower() for n in label_names]
    if path.suffix.lower() == ".csv":
        _read_csv(path, text_field, label_field, names, texts, labels)
    else:
        for where, row in iter_jsonl(path):
            if not isinstance(row, dict) or text_field not in row or label_field not in row:
                raise DataError(f"{where}: expected an object with '{text_field}' and '{label_field}'")
            texts.append(_check_text(row[text_field], where))
            labels.append(_parse_label(row[label_field], where, names))
    if not texts:
        raise DataError(f"{path}: no rows")
    return texts, labels


def _read_csv(path: Path, text_field: str, label_field: str, names: list[str], texts: list[str],
              labels: list[int]) -> None:
    """The rows of a CSV file (a UTF-8 byte-order mark and CRLF accepted; fields up to 64 MiB)."""
    csv.field_size_limit(max(csv.field_size_limit(), MAX_LINE_BYTES))
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        try:
            missing = {text_field, label_field} - set(reader.fieldnames or ())
            if missing:
                raise DataError(f"{path}:1: missing column(s) {', '.join(sorted(missing))}")
            for row in reader:
                where = f"{path}:{reader.line_num}"
                texts.append(_check_text(row[text_field], where))
                labels.append(_parse_label(row[label_field], where, names))
        except UnicodeDecodeError as exc:
            raise DataError(f"{path}:{_bad_utf8_line(path)}: not valid UTF-8 ({exc.reason})") from None
        except csv.Error as exc:
            raise DataError(f"{path}:{reader.line_num}: not valid CSV ({exc})") from None


def _bad_utf8_line(path: Path) -> int:
    """The number of the first line of ``path`` that is not valid UTF-8."""
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, 1):
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError:
                return lineno
    return 1


def subsample(dataset: Dataset, limit: int | None, seed: int = 0) -> Dataset:
    """A fixed seeded subsample of at most ``limit`` rows (the same rows every time)."""
    if limit is None or len(dataset) <= limit:
        return dataset
    idx = sorted(random.Random(f"{seed}:{dataset.name}").sample(range(len(dataset)), limit))
    return Dataset(dataset.name, dataset.domain, [dataset.texts[i] for i in idx],
                   [dataset.labels[i] for i in idx], dataset.source, len(dataset))


def load_dataset(name: str, *, split: str = "test", data_dir: str | Path | None = None,
                 limit: int | None = None, seed: int = 0) -> Dataset:
    """Load a named test/validation set, or a JSONL/CSV file path (domain "custom")."""
    if name in SET_DOMAIN:
        base = Path(data_dir) if data_dir else default_data_dir()
        if split == "validation" and name not in VALIDATION_SETS:
            raise DataError(f"no validation split for '{name}' (have: {', '.join(VALIDATION_SETS)})")
        path = base / split / f"{name}.jsonl"
        if not path.is_file():
            raise DataError(f"{path}: not found; set --data-dir or $UNIGEN_DATA to the folder holding "
                            f"test/ and validation/")
        texts, labels = read_rows(path)
        ds = Dataset(name, SET_DOMAIN[name], texts, labels, str(path))
    elif Path(name).suffix.lower() in (".jsonl", ".json", ".csv"):
        texts, labels = read_rows(name)
        ds = Dataset(Path(name).stem, "custom", texts, labels, str(name))
    else:
        raise DataError(f"unknown dataset '{name}': use one of {', '.join(TEST_SETS)} or a .jsonl/.csv path")
    return subsample(ds, limit, seed)


def parse_dataset_names(spec: str) -> list[str]:
    """``"all"`` -> the seven test sets; otherwise a comma-separated list (names or file paths)."""
    names = [s.strip() for s in spec.split(",") if s.strip()]
    if not names:
        raise DataError("no datasets given")
    out: list[str] = []
    for n in names:
        out.extend(TEST_SETS if n == "all" else [n])
    return list(dict.fromkeys(out))
