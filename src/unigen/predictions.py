"""What a prediction looks like, everywhere: the command line, the Python API and the server.

One prediction is ``{"text": str, "label": str | None, "probabilities": {label: p} | None}`` (probabilities
rounded to 6 decimals, in the model's label order). An empty text (``""`` or only spaces) has no sentiment
and gets no label: ``label`` and ``probabilities`` are ``null`` (empty cells in CSV), in
``unigen predict``, in :meth:`TaskModel.classify <unigen.tam.model.TaskModel.classify>` /
:meth:`OnnxTaskModel.classify <unigen.export.onnx_model.OnnxTaskModel.classify>` and in the server's answers.

:class:`PredictionsMixin` gives both task models (:class:`~unigen.tam.model.TaskModel`,
:class:`~unigen.export.onnx_model.OnnxTaskModel`) their ``predict`` and ``classify`` on top of their own
``predict_proba``. :func:`predict_rows` classifies a stream of :class:`~unigen.textfiles.TextRow` in
chunks with a model loaded by :func:`unigen.inference.load_model` (either backend), and :class:`RowWriter`
writes the rows with their predictions as JSON lines or CSV. This module imports no model code (the task
models import it).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, TextIO

from unigen.errors import UniGenError

__all__ = ["OUTPUT_FORMATS", "PredictionsMixin", "RowWriter", "check_texts", "classify", "output_format",
           "prediction", "predict_rows"]

#: output file endings and their formats
OUTPUT_FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv"}
DECIMALS = 6


def is_empty(text: str) -> bool:
    return not text.strip()


def check_texts(items: Sequence[Any]) -> None:
    """A :class:`TypeError` naming the first item of ``items`` that is not a string, if any."""
    bad = next((i for i, t in enumerate(items) if not isinstance(t, str)), None)
    if bad is not None:
        raise TypeError(f"texts must be strings; item {bad} is {type(items[bad]).__name__}")


def prediction(text: str, probs: Sequence[float] | None, labels: Sequence[str]) -> dict[str, Any]:
    """The one output format: ``{"text", "label", "probabilities": {label: p}}``; ``probs`` ``None`` (an
    empty text) gives ``label`` and ``probabilities`` ``None``."""
    if probs is None:
        return {"text": text, "label": None, "probabilities": None}
    values = [float(x) for x in probs]
    best = max(range(len(values)), key=values.__getitem__)
    return {"text": text, "label": labels[best],
            "probabilities": {lab: round(x, DECIMALS) for lab, x in zip(labels, values)}}


def classify(predict_proba: Callable[[list[str]], Any], labels: Sequence[str], texts: str | Sequence[str]
             ) -> dict[str, Any] | list[dict[str, Any]]:
    """:func:`prediction` of every text (one dict for a single string); empty texts are not given to the
    model."""
    single = isinstance(texts, str)
    items = [texts] if single else list(texts)
    check_texts(items)
    keep = [i for i, t in enumerate(items) if not is_empty(t)]
    probs = predict_proba([items[i] for i in keep]) if keep else []
    found: dict[int, Any] = dict(zip(keep, probs))
    out = [prediction(t, found.get(i), labels) for i, t in enumerate(items)]
    return out[0] if single else out


class PredictionsMixin:
    """``predict`` and ``classify`` for a task model of either backend, built on the class's own ``labels``
    and ``predict_proba(texts, *, batch_size)`` (``(N, C)`` for a list of texts, ``(C,)`` for one string)."""

    labels: tuple[str, ...]
    predict_proba: Callable[..., Any]

    def predict(self, texts: str | Sequence[str], *, batch_size: int = 64) -> str | list[str]:
        """Label names: a list for a list of texts, one name for a single string."""
        probs = self.predict_proba(texts, batch_size=batch_size)
        if probs.ndim == 1:
            return self.labels[int(probs.argmax())]
        return [self.labels[i] for i in probs.argmax(axis=1)]

    def classify(self, texts: str | Sequence[str], *, batch_size: int = 64
                 ) -> dict[str, Any] | list[dict[str, Any]]:
        """Predictions in the format the command line and the server share (:mod:`unigen.predictions`):
        ``{"text", "label", "probabilities": {label: p}}`` per text, a list for a list, one dict for a single
        string. An empty text (or only spaces) gets ``label`` and ``probabilities`` ``None``."""
        return classify(lambda items: self.predict_proba(items, batch_size=batch_size), self.labels, texts)


# ---------------------------------------------------------------- files of texts in, rows out

def predict_rows(model: Any, rows: Iterable[Any], *, batch_size: int = 64, chunk: int = 2048
                 ) -> Iterator[tuple[Any, dict[str, Any]]]:
    """``(row, prediction)`` for every :class:`~unigen.textfiles.TextRow` of ``rows``, in order, classified
    ``chunk`` rows at a time (so memory stays flat however long the stream)."""
    buffer: list[Any] = []
    for row in rows:
        buffer.append(row)
        if len(buffer) >= chunk:
            yield from zip(buffer, model.classify([r.text for r in buffer], batch_size=batch_size))
            buffer = []
    if buffer:
        yield from zip(buffer, model.classify([r.text for r in buffer], batch_size=batch_size))


def output_format(path: str | Path) -> str:
    """``jsonl`` or ``csv`` from the output file's ending; a one-line :class:`UniGenError` otherwise."""
    suffix = Path(path).suffix.lower()
    if suffix not in OUTPUT_FORMATS:
        raise UniGenError(f"--output {path}: cannot tell the format from the ending {suffix or '(none)'!r}: "
                          "use .jsonl or .csv")
    return OUTPUT_FORMATS[suffix]


class RowWriter:
    """Writes each row's columns followed by its prediction.

    JSON lines: ``{...the row's columns, "label", "probabilities": {label: p}}``; CSV: the input's columns,
    then ``label`` and one ``prob_<label>`` column per label. A text's own column keeps its name. An input
    column called ``label``, ``probabilities`` or ``prob_<label>`` would be hidden by the prediction, so it
    is written as ``<name>_input`` (:attr:`renamed` lists them). CSV columns are the input's (for JSON lines
    input, the first object's keys); fields beyond them are left out and counted in :attr:`dropped`.
    """

    def __init__(self, stream: TextIO, fmt: str, columns: Sequence[str], labels: Sequence[str]) -> None:
        self.stream = stream
        self.format = fmt
        self.labels = tuple(labels)
        self.prob_columns = [f"prob_{lab}" for lab in self.labels]
        taken = {"label", "probabilities", *self.prob_columns}
        self.renamed = {c: f"{c}_input" for c in columns if c in taken}
        self.columns = [self.renamed.get(c, c) for c in columns]
        self._known = set(self.columns)
        self.dropped = 0
        self.rows = 0
        self.empty = 0
        if fmt == "csv":
            self._csv = csv.writer(stream, lineterminator="\n")
            self._csv.writerow([*self.columns, "label", *self.prob_columns])

    def _fields(self, fields: dict[str, Any]) -> dict[str, Any]:
        if not self.renamed:
            return fields
        return {self.renamed.get(k, k): v for k, v in fields.items()}

    def write(self, fields: dict[str, Any], pred: dict[str, Any]) -> None:
        fields = self._fields(fields)
        self.rows += 1
        self.empty += pred["label"] is None
        if self.format == "jsonl":
            record = {**fields, "label": pred["label"], "probabilities": pred["probabilities"]}
            self.stream.write(json.dumps(record, ensure_ascii=False, default=str) + "\n")
            return
        if any(k not in self._known for k in fields):
            self.dropped += 1
        probs = pred["probabilities"] or {}
        self._csv.writerow([_cell(fields.get(c)) for c in self.columns] + [pred["label"] or ""]
                           + [probs.get(lab, "") for lab in self.labels])


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, (dict, list, tuple)):
        return json.dumps(value, ensure_ascii=False, default=str)
    return value
