"""Read texts to classify from a file or stdin: the one reader behind ``unigen predict --input FILE`` (and
any later command that takes a file of texts).

Formats, by the file's ending (or ``format=``):

* ``.jsonl`` / ``.ndjson``: one JSON object per line, the text in ``text_field``; blank lines are skipped.
* ``.csv`` (``.tsv``): a header row, then one row per text; the text in the column ``text_field``.
* ``.parquet``: a string column ``text_field``.
* ``.txt`` (and stdin, unless its first line is a JSON object): one text per line, every line a row.

``text_field`` defaults to ``text``, else to the only column (the only string field of the first JSON
object). Every other column is carried in :attr:`TextRow.fields` (as read: strings for CSV and text, JSON
values for JSONL, Python values for Parquet), so ids survive a round trip. An empty text (``""``, only
spaces, a JSON ``null``, an empty cell, a blank line of a text file) is a row like any other: the caller
decides what it means (``unigen predict`` gives it no label).

Reading streams: a million-line file is never held at once. :func:`open_texts` checks what can be checked
before any work (the file exists and is a file, it is not empty, the format is known, the text column
exists), and a bad row later raises :class:`~unigen.errors.DataError` naming the file and line: invalid
UTF-8, invalid JSON, a line that is not an object, a missing or non-string text, an unpaired surrogate.

    from unigen.textfiles import iter_texts, open_texts

    for row in open_texts("reviews.csv", text_field="review"):   # TextRow(where, text, fields)
        ...
    texts = list(iter_texts("reviews.txt"))                       # just the texts
"""

from __future__ import annotations

import csv
import io
import json
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from itertools import chain
from pathlib import Path
from typing import Any, BinaryIO

from unigen.errors import DataError, short_repr
from unigen.files import check_unicode

__all__ = ["FORMATS", "STDIN", "TextFile", "TextRow", "count_rows", "format_of", "iter_texts", "open_texts"]

STDIN = "-"
FORMATS = ("jsonl", "csv", "tsv", "parquet", "txt")
SUFFIXES = {".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv", ".tsv": "tsv", ".parquet": "parquet",
            ".txt": "txt", ".text": "txt"}
DEFAULT_FIELD = "text"
#: the longest line read (bounded memory on hostile files); longer is a DataError
MAX_LINE_BYTES = 64 << 20
_BOM = b"\xef\xbb\xbf"


@dataclass
class TextRow:
    """One row: ``where`` (``file:line``, or ``file:row N`` for Parquet), its ``text`` (``""`` when empty)
    and every column as read (``fields``, the text column included)."""

    where: str
    text: str
    fields: dict[str, Any] = field(default_factory=dict)

    @property
    def empty(self) -> bool:
        return not self.text.strip()


def format_of(path: str | Path) -> str:
    """The format a file's ending names; a :class:`DataError` for an ending that names none."""
    suffix = Path(path).suffix.lower()
    if suffix not in SUFFIXES:
        raise DataError(f"{path}: cannot tell the format from the ending {suffix or '(none)'!r}: use .jsonl, "
                        ".csv, .tsv, .parquet or .txt (or name the format, --input-format)")
    return SUFFIXES[suffix]


def _decoded_lines(stream: BinaryIO, name: str) -> Iterator[tuple[int, str]]:
    """``(line number, line)`` of a byte stream, decoded as UTF-8 line by line (a byte-order mark on the
    first line is dropped; line ends are kept), each line at most :data:`MAX_LINE_BYTES`."""
    lineno = 0
    while raw := stream.readline(MAX_LINE_BYTES + 1):
        lineno += 1
        if len(raw) > MAX_LINE_BYTES:
            raise DataError(f"{name}:{lineno}: line longer than {MAX_LINE_BYTES >> 20} MiB")
        if lineno == 1:
            raw = raw.removeprefix(_BOM)
        try:
            yield lineno, raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise DataError(f"{name}:{lineno}: not valid UTF-8 (byte {exc.start + 1} of the line)") from None


def _check_text(value: Any, where: str, text_field: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise DataError(f"{where}: {text_field!r} is {type(value).__name__} {short_repr(value, 40)}, not a "
                        "string")
    return check_unicode(value, where)


def _pick_field(columns: list[str], wanted: str | None, name: str, strings: list[str] | None = None) -> str:
    """``wanted``, else ``text``, else the only column (the only string column of ``strings``)."""
    if wanted is not None:
        if wanted not in columns:
            raise DataError(f"{name}: no column {wanted!r} (columns: {', '.join(columns) or 'none'})")
        return wanted
    if DEFAULT_FIELD in columns:
        return DEFAULT_FIELD
    candidates = strings if strings is not None else columns
    if len(candidates) == 1:
        return candidates[0]
    raise DataError(f"{name}: no {DEFAULT_FIELD!r} column (columns: {', '.join(columns) or 'none'}); name "
                    "the column that holds the texts with --text-field")


class TextFile:
    """The rows of one input (iterate it once): see the module docstring. Build it with
    :func:`open_texts`; ``format``, ``text_field`` and ``columns`` (known before the first row is read:
    the CSV header, the Parquet schema, the first JSON object's keys, ``["text"]`` for text files) say
    what it holds."""

    def __init__(self, name: str, fmt: str, text_field: str, columns: list[str], rows: Iterator[TextRow],
                 closer: Any = None) -> None:
        self.name = name
        self.format = fmt
        self.text_field = text_field
        self.columns = columns
        self._rows = rows
        self._closer = closer

    def __iter__(self) -> Iterator[TextRow]:
        try:
            yield from self._rows
        finally:
            self.close()

    def close(self) -> None:
        if self._closer is not None:
            self._closer.close()
            self._closer = None

    def __enter__(self) -> TextFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _open_binary(path: str | Path) -> tuple[BinaryIO, str]:
    if str(path) == STDIN:
        stream = getattr(sys.stdin, "buffer", None)
        if stream is None:  # a text stream put in place of stdin (tests)
            stream = io.BytesIO(sys.stdin.read().encode("utf-8", "surrogateescape"))
        return stream, "<stdin>"
    p = Path(path)
    if p.is_dir():
        raise DataError(f"{path}: is a folder, not a file")
    try:
        f = open(p, "rb")
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot be read ({exc.strerror})") from None
    return f, str(path)


def open_texts(path: str | Path, *, text_field: str | None = None, format: str | None = None) -> TextFile:
    """Open ``path`` (``"-"``: stdin) for reading texts; raises :class:`DataError` (one line naming the file)
    for a missing file, a folder, an unknown ending, an empty file, a missing text column, or a first row
    that cannot be read."""
    if format is not None and format not in FORMATS:
        raise DataError(f"unknown input format {format!r}: use {', '.join(FORMATS)}")
    stdin = str(path) == STDIN
    fmt = format or (None if stdin else format_of(path))
    if fmt == "parquet":
        if stdin:
            raise DataError("Parquet cannot be read from stdin: give the file's path")
        return _open_parquet(Path(path), text_field)
    stream, name = _open_binary(path)
    closer = None if stdin else stream
    try:
        lines = _decoded_lines(stream, name)
        peeked = _peek(lines, name)
        if fmt is None:  # stdin: JSON lines when the first line is a JSON object, else plain text
            fmt = "jsonl" if _is_json_object(peeked[-1][1]) else "txt"
        if fmt == "txt":
            if text_field not in (None, DEFAULT_FIELD):
                raise DataError(f"{name}: a text file has one text per line and no columns: leave out "
                                "--text-field")
            rows = _txt_rows(chain(peeked, lines), name)
            return TextFile(name, fmt, DEFAULT_FIELD, [DEFAULT_FIELD], rows, closer)
        if not peeked[-1][1].strip():
            raise DataError(f"{name}: no texts (only blank lines)")
        rest = chain(peeked[-1:], lines)
        if fmt == "jsonl":
            return _open_jsonl(rest, name, text_field, closer)
        return _open_csv(rest, name, text_field, "\t" if fmt == "tsv" else ",", fmt, closer)
    except BaseException:
        if closer is not None:
            closer.close()
        raise


def _peek(lines: Iterator[tuple[int, str]], name: str) -> list[tuple[int, str]]:
    """The lines up to the first that is not blank (all of them when every line is blank)."""
    peeked: list[tuple[int, str]] = []
    for item in lines:
        peeked.append(item)
        if item[1].strip():
            break
    if not peeked:
        raise DataError(f"{name}: no texts (the file is empty)")
    return peeked


def _is_json_object(line: str) -> bool:
    if not line.lstrip().startswith("{"):
        return False
    try:
        return isinstance(json.loads(line), dict)
    except (json.JSONDecodeError, RecursionError):
        return False


def _txt_rows(lines: Iterable[tuple[int, str]], name: str) -> Iterator[TextRow]:
    for lineno, line in lines:
        text = line.rstrip("\r\n")
        yield TextRow(f"{name}:{lineno}", text, {DEFAULT_FIELD: text})


def _json_object(lineno: int, line: str, name: str) -> dict[str, Any]:
    where = f"{name}:{lineno}"
    try:
        value = json.loads(line)
    except json.JSONDecodeError as exc:
        raise DataError(f"{where}: not valid JSON ({exc.msg})") from None
    except RecursionError:
        raise DataError(f"{where}: JSON nested too deeply") from None
    if not isinstance(value, dict):
        raise DataError(f"{where}: expected a JSON object with a text field, got {short_repr(value, 40)}")
    return value


def _open_jsonl(lines: Iterator[tuple[int, str]], name: str, text_field: str | None, closer: Any) -> TextFile:
    lineno, line = next(lines)
    first = _json_object(lineno, line, name)
    columns = list(first)
    chosen = _pick_field(columns, text_field, f"{name}:{lineno}",
                         [k for k, v in first.items() if isinstance(v, str)])

    def rows() -> Iterator[TextRow]:
        for n, obj in chain([(lineno, first)],
                            ((n, _json_object(n, raw, name)) for n, raw in lines if raw.strip())):
            where = f"{name}:{n}"
            if chosen not in obj:
                keys = ", ".join(map(str, obj)) or "none"
                raise DataError(f"{where}: no {chosen!r} field (fields: {keys})")
            yield TextRow(where, _check_text(obj[chosen], where, chosen), obj)

    return TextFile(name, "jsonl", chosen, columns, rows(), closer)


def _open_csv(lines: Iterator[tuple[int, str]], name: str, text_field: str | None, delimiter: str, fmt: str,
              closer: Any) -> TextFile:
    csv.field_size_limit(MAX_LINE_BYTES)
    position = [0]

    def texts() -> Iterator[str]:
        for n, line in lines:
            position[0] = n
            yield line

    reader = csv.reader(texts(), delimiter=delimiter)
    try:
        header = next(reader)
    except csv.Error as exc:
        raise DataError(f"{name}:{position[0]}: not valid CSV ({exc})") from None
    columns = [c.strip() for c in header]
    if len(set(columns)) != len(columns):
        raise DataError(f"{name}:{position[0]}: the header names a column twice ({', '.join(columns)})")
    chosen = _pick_field(columns, text_field, f"{name}:{position[0]}")
    index = columns.index(chosen)

    def rows() -> Iterator[TextRow]:
        seen = 0
        while True:
            try:
                cells = next(reader)
            except StopIteration:
                break
            except csv.Error as exc:
                raise DataError(f"{name}:{position[0]}: not valid CSV ({exc})") from None
            where = f"{name}:{position[0]}"
            if not cells:  # a blank line
                continue
            if len(cells) != len(columns):
                raise DataError(f"{where}: {len(cells)} fields, the header has {len(columns)}")
            seen += 1
            yield TextRow(where, _check_text(cells[index], where, chosen), dict(zip(columns, cells)))
        if not seen:
            raise DataError(f"{name}: no rows after the header")

    return TextFile(name, fmt, chosen, columns, rows(), closer)


def _open_parquet(path: Path, text_field: str | None) -> TextFile:
    import pyarrow as pa
    import pyarrow.parquet as pq

    if path.is_dir():
        raise DataError(f"{path}: is a folder, not a file")
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    try:
        pf = pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as exc:
        raise DataError(f"{path}: not a readable Parquet file ({' '.join(str(exc).split())[:200]})") from None
    schema = pf.schema_arrow
    columns = list(schema.names)
    def is_text(kind: Any) -> bool:
        return pa.types.is_string(kind) or pa.types.is_large_string(kind)

    chosen = _pick_field(columns, text_field, str(path), [f.name for f in schema if is_text(f.type)])
    kind = schema.field(chosen).type
    if not (is_text(kind) or pa.types.is_null(kind)):
        raise DataError(f"{path}: column {chosen!r} holds {kind}, not text")
    if pf.metadata.num_rows == 0:
        raise DataError(f"{path}: no texts (no rows)")

    def rows() -> Iterator[TextRow]:
        n = 0
        for batch in pf.iter_batches(batch_size=1024):
            for row in batch.to_pylist():
                n += 1
                where = f"{path}:row {n}"
                yield TextRow(where, _check_text(row[chosen], where, chosen), row)

    return TextFile(str(path), "parquet", chosen, columns, rows(), pf)


def count_rows(path: str | Path, format: str | None = None) -> int | None:
    """About how many rows ``path`` holds, quickly (for a progress bar): Parquet's row count, else its
    lines (less the CSV header); ``None`` for stdin or a file that cannot be read."""
    if str(path) == STDIN:
        return None
    try:
        fmt = format or format_of(path)
        if fmt == "parquet":
            import pyarrow.parquet as pq

            return pq.ParquetFile(path).metadata.num_rows
        lines, last = 0, b"\n"
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                lines += block.count(b"\n")
                last = block[-1:]
        lines += last != b"\n"
        return max(lines - (fmt in ("csv", "tsv")), 0)
    except (OSError, DataError, ValueError):
        return None


def iter_texts(path: str | Path, *, text_field: str | None = None, format: str | None = None,
               skip_empty: bool = True) -> Iterator[str]:
    """Just the texts of ``path`` (:func:`open_texts`), empty ones left out unless ``skip_empty=False``."""
    for row in open_texts(path, text_field=text_field, format=format):
        if not (skip_empty and row.empty):
            yield row.text
