"""unigen.textfiles: the one reader of files of texts (JSON lines, CSV, Parquet, plain text, stdin)."""

from __future__ import annotations

import io
import json
import sys

import pytest

from unigen.errors import DataError
from unigen.textfiles import count_rows, iter_texts, open_texts


def rows_of(path, **kw):
    return [(r.text, r.fields) for r in open_texts(path, **kw)]


def test_jsonl_csv_parquet_and_text_carry_every_column(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    (tmp_path / "a.jsonl").write_text('{"id": 7, "text": "good", "meta": {"k": 1}}\n\n'
                                      '{"id": 8, "text": null}\n')
    assert rows_of(tmp_path / "a.jsonl") == [("good", {"id": 7, "text": "good", "meta": {"k": 1}}),
                                             ("", {"id": 8, "text": None})]
    (tmp_path / "a.csv").write_bytes(b'\xef\xbb\xbfid,review\r\n1,"fine, ""really""\r\nfine"\r\n2,\r\n')
    source = open_texts(tmp_path / "a.csv", text_field="review")
    assert source.columns == ["id", "review"] and source.text_field == "review"
    assert [(r.text, r.fields["id"]) for r in source] == [('fine, "really"\r\nfine', "1"), ("", "2")]
    (tmp_path / "a.tsv").write_text("text\tid\nhello there\t3\n")
    assert rows_of(tmp_path / "a.tsv") == [("hello there", {"text": "hello there", "id": "3"})]
    pq.write_table(pa.table({"id": [1, 2], "body": ["great", None]}), tmp_path / "a.parquet")
    assert rows_of(tmp_path / "a.parquet", text_field="body") == [("great", {"id": 1, "body": "great"}),
                                                                 ("", {"id": 2, "body": None})]
    (tmp_path / "a.txt").write_bytes(b"one\r\n\ntwo")  # every line a row, blank ones included
    assert [t for t, _ in rows_of(tmp_path / "a.txt")] == ["one", "", "two"]
    assert list(iter_texts(tmp_path / "a.txt")) == ["one", "two"]


def test_the_text_column_defaults_to_text_or_the_only_one(tmp_path):
    (tmp_path / "one.csv").write_text("review\ngreat\n")
    assert open_texts(tmp_path / "one.csv").text_field == "review"
    (tmp_path / "one.jsonl").write_text('{"n": 1, "sentence": "ok"}\n')
    assert open_texts(tmp_path / "one.jsonl").text_field == "sentence"  # the only string field
    (tmp_path / "two.csv").write_text("a,b\nx,y\n")
    with pytest.raises(DataError, match=r"two.csv:1: no 'text' column \(columns: a, b\); name the column .*"
                                        "--text-field"):
        open_texts(tmp_path / "two.csv")


@pytest.mark.parametrize(("name", "content", "message"), [
    ("missing.csv", None, "missing.csv: no such file"),
    ("empty.jsonl", b"", "empty.jsonl: no texts (the file is empty)"),
    ("empty.txt", b"", "empty.txt: no texts (the file is empty)"),
    ("blank.jsonl", b"\n\n", "blank.jsonl: no texts (only blank lines)"),
    ("header.csv", b"id,text\n", "header.csv: no rows after the header"),
    ("latin1.csv", b"text\nfine\ncaf\xe9\n", "latin1.csv:3: not valid UTF-8 (byte 4 of the line)"),
    ("latin1.txt", b"fine\ncaf\xe9\n", "latin1.txt:2: not valid UTF-8 (byte 4 of the line)"),
    ("latin1.jsonl", b'{"text": "caf\xe9"}\n', "latin1.jsonl:1: not valid UTF-8"),
    ("nojson.jsonl", b'{"text": "a"}\nnope\n', "nojson.jsonl:2: not valid JSON"),
    ("list.jsonl", b'["a"]\n', "list.jsonl:1: expected a JSON object"),
    ("nofield.jsonl", b'{"text": "a"}\n{"body": "b"}\n', "nofield.jsonl:2: no 'text' field (fields: body)"),
    ("number.jsonl", b'{"text": 3}\n', "number.jsonl:1: 'text' is int 3, not a string"),
    ("surrogate.jsonl", b'{"text": "\\ud800"}\n', "surrogate.jsonl:1: the text holds an unpaired surrogate"),
    ("ragged.csv", b"id,text\n1,a,b\n", "ragged.csv:2: 3 fields, the header has 2"),
    ("data.xlsx", b"PK", "data.xlsx: cannot tell the format from the ending '.xlsx'"),
    ("bad.parquet", b"not parquet", "bad.parquet: not a readable Parquet file"),
    ("folder.csv", "dir", "folder.csv: is a folder, not a file"),
])
def test_bad_files_are_one_line_errors_naming_file_and_line(tmp_path, name, content, message):
    path = tmp_path / name
    if content == "dir":
        path.mkdir()
    elif content is not None:
        path.write_bytes(content)
    with pytest.raises(DataError) as info:
        list(open_texts(path))
    assert str(info.value).startswith(str(path)) and message in str(info.value), str(info.value)
    assert "\n" not in str(info.value)


def test_stdin_is_json_lines_when_it_starts_with_an_object(monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b'{"id": 1, "text": "good"}\n')))
    source = open_texts("-")
    assert source.format == "jsonl" and [r.fields for r in source] == [{"id": 1, "text": "good"}]
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"\n{not json} at all\nsecond\n")))
    source = open_texts("-")
    assert source.format == "txt" and [r.text for r in source] == ["", "{not json} at all", "second"]


def test_reading_streams_and_counts_quickly(tmp_path):
    path = tmp_path / "big.jsonl"
    with open(path, "w") as f:
        for i in range(50_000):
            f.write(json.dumps({"id": i, "text": f"text {i}"}) + "\n")
    assert count_rows(path) == 50_000
    rows = iter(open_texts(path))
    assert next(rows).fields == {"id": 0, "text": "text 0"}  # without reading the rest
    assert sum(1 for _ in rows) == 49_999
    (tmp_path / "c.csv").write_text("text\na\nb")
    assert count_rows(tmp_path / "c.csv") == 2 and count_rows("-") is None
