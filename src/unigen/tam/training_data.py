"""Training rows for the task model: parsing, validation and the JSONL reader.

A row is a mapping with ``text`` and either ``probs`` (``C`` non-negative floats summing to 1, the soft
relabel targets) or ``label`` (an integer class id, i.e. a one-hot target); optional ``weight`` (a
SunGen sample weight, a finite number) and ``keep`` (a bool; rows with ``keep`` false are skipped).
Either every kept row has a ``weight`` or none has. Errors name the file and line (or row index).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from unigen.errors import DataError, short_repr
from unigen.files import check_unicode, iter_jsonl

__all__ = ["TrainingData", "as_training_data", "parse_rows", "read_training_rows"]

PROB_SUM_TOLERANCE = 1e-2


@dataclass
class TrainingData:
    """``texts`` (N), ``targets`` ``(N, C)`` float32 rows summing to 1, ``weights`` ``(N,)`` float32 or
    None."""

    texts: list[str]
    targets: np.ndarray
    weights: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.targets = np.asarray(self.targets, dtype=np.float32)
        n = len(self.texts)
        if self.targets.ndim != 2 or self.targets.shape[0] != n:
            raise DataError(f"targets must have shape (N={n}, C), got {self.targets.shape}")
        if not np.all(np.isfinite(self.targets)) or np.any(self.targets < 0):
            raise DataError("targets must be finite and non-negative")
        sums = self.targets.sum(axis=1)
        if np.any(np.abs(sums - 1.0) > PROB_SUM_TOLERANCE):
            bad = int(np.argmax(np.abs(sums - 1.0)))
            raise DataError(f"targets of row {bad} sum to {sums[bad]:.4f}, not 1")
        self.targets = self.targets / sums[:, None]
        if self.weights is not None:
            self.weights = np.asarray(self.weights, dtype=np.float32)
            if self.weights.shape != (n,) or not np.all(np.isfinite(self.weights)):
                raise DataError(f"weights must be {n} finite numbers")
        bad_text = next((i for i, t in enumerate(self.texts) if not isinstance(t, str)), None)
        if bad_text is not None:
            raise DataError(f"text of row {bad_text} is not a string")

    def __len__(self) -> int:
        return len(self.texts)

    @property
    def num_labels(self) -> int:
        return int(self.targets.shape[1])

    def hard_labels(self) -> np.ndarray:
        """``argmax`` of the targets, ``(N,)`` int64 (ties go to the lower class id)."""
        return self.targets.argmax(axis=1).astype(np.int64)

    def subset(self, idx: Sequence[int] | np.ndarray) -> TrainingData:
        idx = np.asarray(idx, dtype=np.int64)
        return TrainingData([self.texts[i] for i in idx], self.targets[idx],
                            None if self.weights is None else self.weights[idx])

    def digest(self) -> str:
        """sha256 over texts, targets and weights (identifies the data in checkpoints)."""
        h = hashlib.sha256()
        for t in self.texts:
            h.update(t.encode("utf-8") + b"\0")
        h.update(self.targets.tobytes())
        h.update(b"w" + (self.weights.tobytes() if self.weights is not None else b"none"))
        return h.hexdigest()


def _targets(row: Mapping[str, Any], where: str, num_labels: int) -> list[float]:
    if "probs" in row:
        probs = row["probs"]
        ok = isinstance(probs, list) and len(probs) == num_labels and all(
            isinstance(p, (int, float)) and not isinstance(p, bool) and math.isfinite(p) and p >= 0
            for p in probs)
        if not ok:
            raise DataError(f"{where}: 'probs' must be a list of {num_labels} non-negative numbers, "
                            f"got {short_repr(probs)}")
        if abs(sum(probs) - 1.0) > PROB_SUM_TOLERANCE:
            raise DataError(f"{where}: 'probs' sum to {sum(probs):.4f}, not 1")
        return [float(p) for p in probs]
    if "label" in row:
        label = row["label"]
        if isinstance(label, bool) or not isinstance(label, int) or not 0 <= label < num_labels:
            raise DataError(
                f"{where}: 'label' must be a class id in 0..{num_labels - 1}, got {short_repr(label)}")
        return [1.0 if c == label else 0.0 for c in range(num_labels)]
    raise DataError(f"{where}: row needs 'probs' or 'label'")


def _weight(row: Mapping[str, Any], where: str) -> float | None:
    if "weight" not in row or row["weight"] is None:
        return None
    w = row["weight"]
    if isinstance(w, bool) or not isinstance(w, (int, float)) or not math.isfinite(w):
        raise DataError(f"{where}: 'weight' must be a finite number, got {short_repr(w)}")
    return float(w)


def _parse_row(row: Any, where: str, num_labels: int) -> tuple[str, list[float], float | None] | None:
    """``(text, targets, weight)``, or None for a row with ``keep`` false."""
    if not isinstance(row, Mapping):
        raise DataError(f"{where}: expected a JSON object, got {type(row).__name__}")
    keep = row.get("keep", True)
    if not isinstance(keep, bool):
        raise DataError(f"{where}: 'keep' must be true or false, got {short_repr(keep)}")
    if not keep:
        return None
    text = row.get("text")
    if not isinstance(text, str) or not text.strip():
        raise DataError(f"{where}: 'text' must be a non-empty string, got {short_repr(text)}")
    return check_unicode(text, where), _targets(row, where, num_labels), _weight(row, where)


def _collect(parsed: list[tuple[str, str, list[float], float | None]], source: str) -> TrainingData:
    if not parsed:
        raise DataError(f"{source}: no rows to train on")
    has_weight = [w is not None for _, _, _, w in parsed]
    if any(has_weight) and not all(has_weight):
        first = has_weight.index(not has_weight[0])
        raise DataError(f"{parsed[first][0]}: either every kept row has a 'weight' or none has")
    weights = np.array([w for *_, w in parsed], dtype=np.float32) if all(has_weight) else None
    return TrainingData([t for _, t, _, _ in parsed], np.array([p for _, _, p, _ in parsed]), weights)


def parse_rows(rows: Sequence[Mapping[str, Any]], num_labels: int, *, source: str = "rows") -> TrainingData:
    """Validate in-memory rows (see the module docstring); errors name ``source`` and the row index."""
    parsed = []
    for i, row in enumerate(rows):
        where = f"{source}[{i}]"
        item = _parse_row(row, where, num_labels)
        if item is not None:
            parsed.append((where, *item))
    return _collect(parsed, source)


def read_training_rows(path: str | Path, num_labels: int) -> TrainingData:
    """Read a JSONL file of training rows; every error names ``path:line``."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    parsed = []
    for where, row in iter_jsonl(path):
        item = _parse_row(row, where, num_labels)
        if item is not None:
            parsed.append((where, *item))
    return _collect(parsed, str(path))


def as_training_data(data: Any, num_labels: int) -> TrainingData:
    """Accept :class:`TrainingData`, a sequence of row mappings, or ``(texts, targets, weights | None)``."""
    if isinstance(data, TrainingData):
        out = data
    elif isinstance(data, tuple) and len(data) in (2, 3) and not isinstance(data[0], Mapping):
        texts, targets = list(data[0]), data[1]
        weights = data[2] if len(data) == 3 else None
        out = TrainingData(texts, np.asarray(targets, dtype=np.float32),
                           None if weights is None else np.asarray(weights, dtype=np.float32))
    else:
        out = parse_rows(list(data), num_labels)
    if out.num_labels != num_labels:
        raise DataError(f"targets have {out.num_labels} classes but {num_labels} labels were given")
    return out
