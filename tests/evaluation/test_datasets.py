
import pytest

from unigen.errors import DataError
from unigen.evaluation.datasets import load_dataset, parse_dataset_names, read_rows, subsample
from unigen.evaluation.paper import SET_DOMAIN


def test_named_sets_load_with_domains():
    sizes = {"sst2": 1821, "rotten_tomatoes": 1066, "amazon": 1000, "yelp": 1000, "cr": 3765, "tweet": 6347}
    for name, n in sizes.items():
        ds = load_dataset(name)
        assert len(ds) == n and ds.domain == SET_DOMAIN[name]
        assert set(ds.labels) == {0, 1}
    assert load_dataset("sst2", split="validation").labels.count(1) == 444


def test_limit_is_a_fixed_seeded_subsample():
    a, b = load_dataset("cr", limit=50), load_dataset("cr", limit=50)
    assert a.texts == b.texts and len(a) == 50 and a.subsampled_from == 3765
    assert load_dataset("cr", limit=50, seed=1).texts != a.texts
    assert subsample(a, 100) is a


def test_unknown_names_and_splits():
    with pytest.raises(DataError, match="unknown dataset 'sst3'"):
        load_dataset("sst3")
    with pytest.raises(DataError, match="no validation split for 'imdb'"):
        load_dataset("imdb", split="validation")
    with pytest.raises(DataError, match="not found"):
        load_dataset("sst2", data_dir="/nonexistent")


def test_data_dir_from_environment(monkeypatch, tmp_path):
    (tmp_path / "test").mkdir()
    (tmp_path / "test" / "sst2.jsonl").write_text('{"text": "fine", "label": 1}\n')
    monkeypatch.setenv("UNIGEN_DATA", str(tmp_path))
    assert load_dataset("sst2").texts == ["fine"]


def test_custom_jsonl_and_csv(labelled_jsonl, tmp_path):
    ds = load_dataset(str(labelled_jsonl))
    assert ds.domain == "custom" and ds.labels == [1, 0, 1, 0]
    csv_path = tmp_path / "x.csv"
    csv_path.write_text('review,stars\n"good, really",positive\nbad,0\n')
    assert read_rows(csv_path, text_field="review", label_field="stars") == (["good, really", "bad"], [1, 0])


@pytest.mark.parametrize("content, message", [
    ('{"text": "ok", "label": 1}\n{"text": "x", "label": 1\n', ":2: not valid JSON"),
    ('{"text": "ok", "label": 1}\n{"txt": "x", "label": 1}\n', ":2: expected an object with 'text'"),
    ('{"text": "ok", "label": 7}\n', ":1: label 7 is outside"),
    ('{"text": "ok", "label": "great"}\n', ":1: label 'great' is not"),
    ('{"text": "", "label": 0}\n', ":1: text must be a non-empty string"),
    ('{"text": 5, "label": 0}\n', ":1: text must be"),
    ('{"text": "ok", "label": true}\n', ":1: label must be"),
    ("\n", "no rows"),
])
def test_malformed_jsonl_names_file_and_line(tmp_path, content, message):
    path = tmp_path / "bad.jsonl"
    path.write_text(content)
    with pytest.raises(DataError, match=message) as err:
        read_rows(path)
    assert str(path) in str(err.value)


def test_malformed_csv(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("text,label\nok,1\nfine,maybe\n")
    with pytest.raises(DataError, match=r"bad.csv:3: label 'maybe'"):
        read_rows(path)
    path.write_text("body,label\nok,1\n")
    with pytest.raises(DataError, match="missing column"):
        read_rows(path)


def test_parse_dataset_names():
    assert parse_dataset_names("all") == list(SET_DOMAIN)
    assert parse_dataset_names("sst2, cr,sst2") == ["sst2", "cr"]
    with pytest.raises(DataError):
        parse_dataset_names(" , ")


@pytest.mark.parametrize("name", ["sst2", "amazon", "cr"])
def test_test_files_are_jsonl_with_binary_labels(name):
    ds = load_dataset(name)
    assert len(ds) > 500 and set(ds.labels) == {0, 1} and ds.domain == SET_DOMAIN[name]
    assert all(isinstance(t, str) and t.strip() for t in ds.texts)
    assert 0.2 < sum(ds.labels) / len(ds) < 0.8  # both classes, not a one-label file


def test_default_data_dir_is_beside_the_project(monkeypatch, tmp_path):
    from pathlib import Path

    from unigen.evaluation.datasets import default_data_dir

    monkeypatch.delenv("UNIGEN_DATA", raising=False)
    monkeypatch.chdir(tmp_path)  # not found from the working directory: the project's sibling folder
    project = Path(__file__).resolve().parents[2]
    assert default_data_dir() == project.parent / "shared" / "datasets"


def test_bom_crlf_long_lines_and_nul_bytes_in_csv(tmp_path):
    from unigen.errors import DataError

    path = tmp_path / "a.csv"
    path.write_bytes(b"\xef\xbb\xbftext,label\r\n" + b"good " * 2_000_000 + b",positive\r\nawful,0\r\n")
    texts, labels = read_rows(path)
    assert labels == [1, 0] and len(texts[0]) == 10_000_000
    path.write_bytes(b"text,label\ngreat,1\nnul\x00byte,0\n")
    assert read_rows(path) == (["great", "nul\x00byte"], [1, 0])
    path.write_bytes(b'text,label\ngreat,1\n"unclosed,0\n' + b"x" * 100)
    with pytest.raises(DataError, match=r"a.csv:4: label None is not a class id"):  # quote never closed
        read_rows(path)
    jsonl = tmp_path / "s.jsonl"
    jsonl.write_text('{"text": "half \\ud800 pair", "label": 1}\n')
    with pytest.raises(DataError, match=r"s.jsonl:1: the text holds an unpaired surrogate"):
        read_rows(jsonl)
