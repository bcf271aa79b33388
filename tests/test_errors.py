"""Bad user input through the command line: exit status 2 and one line ``unigen: error: ...`` that names the
file (and line), the folder or the setting; never a traceback."""

import json
import shutil

import pytest

from unigen.cli import main
from unigen.errors import (
    CellsFailed,
    ConfigError,
    DataError,
    GenerationError,
    ModelNotAvailable,
    StageError,
    UniGenError,
)

from capabilities import missing

ROWS = "".join(json.dumps({"text": f"{word} movie {i}", "label": i % 2}) + "\n"
               for i, word in enumerate(["bad", "good"] * 6))



def train_args(bert_dir, data, out, *settings):
    sets = [f"train.tam={bert_dir}", "train.projection_dim=16", "device=cpu", *settings]
    return [
        "train",
        "--data",
        str(data),
        "--output",
        str(out),
        "--quiet",
        *[x for s in sets for x in ("--set", s)],
    ]


def files(tmp):
    """The bad inputs, written into ``tmp``."""
    (tmp / "rows.jsonl").write_text(ROWS)
    (tmp / "latin1.jsonl").write_bytes(
        ROWS.encode() + '{"text": "caf\xe9 ok", "label": 1}\n'.encode("latin-1")
    )
    (tmp / "latin1.csv").write_bytes(b"text,label\nfine,1\n" + "caf\xe9,0\n".encode("latin-1"))
    (tmp / "empty.jsonl").write_text("")
    (tmp / "no_label.csv").write_text("text,sentiment\ngreat,1\n")
    (tmp / "wrong_keys.jsonl").write_text('{"txt": "great", "label": 1}\n')
    (tmp / "not_json.jsonl").write_text('{"text": "fine", "label": 1}\nnot json\n')
    (tmp / "bad.yaml").write_text("generate: [unclosed\n")
    (tmp / "latin1.yaml").write_bytes("seed: 1 # caf\xe9\n".encode("latin-1"))
    (tmp / "not_a_model").mkdir()
    (tmp / "not_a_model" / "notes.txt").write_text("hello")


CASES = [  # (argv with {tmp}, what the message must contain)
    (["weight", "--data", "{tmp}/latin1.jsonl", "--output", "{tmp}/w"], "latin1.jsonl:13: not valid UTF-8"),
    (["train", "--data", "{tmp}/latin1.jsonl", "--output", "{tmp}/t"], "latin1.jsonl:13: not valid UTF-8"),
    (
        ["evaluate", "--model", "vader", "--datasets", "{tmp}/latin1.jsonl"],
        "latin1.jsonl:13: not valid UTF-8",
    ),
    (["evaluate", "--model", "vader", "--datasets", "{tmp}/latin1.csv"], "latin1.csv:3: not valid UTF-8"),
    (["predict", "--model", "{tmp}/missing", "good"], "missing: no such folder"),
    (["predict", "--model", "{tmp}/not_a_model", "good"], "not_a_model is not a UniGen task-model folder"),
    (
        ["evaluate", "--model", "{tmp}/missing", "--datasets", "{tmp}/rows.jsonl"],
        "unknown model '{tmp}/missing'",
    ),
    (
        ["evaluate", "--model", "{tmp}/not_a_model", "--datasets", "{tmp}/rows.jsonl"],
        "not a UniGen task-model folder",
    ),
    (
        ["evaluate", "--model", "vader", "--datasets", "{tmp}/no_label.csv"],
        "no_label.csv:1: missing column(s) label",
    ),
    (
        ["evaluate", "--model", "vader", "--datasets", "{tmp}/wrong_keys.jsonl"],
        "wrong_keys.jsonl:1: expected an object",
    ),
    (
        ["train", "--data", "{tmp}/wrong_keys.jsonl", "--output", "{tmp}/t"],
        "wrong_keys.jsonl:1: 'text' must be",
    ),
    (["weight", "--data", "{tmp}/not_json.jsonl", "--output", "{tmp}/w"], "not_json.jsonl:2: not valid JSON"),
    (["train", "--data", "{tmp}/empty.jsonl", "--output", "{tmp}/t"], "empty.jsonl: no rows to train on"),
    (["weight", "--data", "{tmp}/empty.jsonl", "--output", "{tmp}/w"], "empty.jsonl: no rows to train on"),
    (["evaluate", "--model", "vader", "--datasets", "{tmp}/empty.jsonl"], "empty.jsonl: no rows"),
    (["train", "--data", "{tmp}/missing.jsonl", "--output", "{tmp}/t"], "missing.jsonl: file not found"),
    (["relabel", "--input", "{tmp}/missing"], "missing is not a stage folder"),
    (["weight", "--data", "{tmp}/not_a_model"], "not_a_model is not a stage folder"),
    (["run", "--config", "{tmp}/bad.yaml", "--workdir", "{tmp}/r"], "bad.yaml:2: not valid YAML"),
    (["config", "--config", "{tmp}/latin1.yaml"], "latin1.yaml: not valid UTF-8"),
    (["config", "--config", "{tmp}/nothing.yaml"], "config file not found"),
    (["config", "--set", "generate.colour=red"], "unknown setting(s): generate.colour"),
    (["config", "--set", "relabel.threshold=1.5"], "relabel.threshold must be in [0, 1)"),
    (["experiment", "{tmp}/nothing.yaml"], "experiment file not found"),
]


@pytest.mark.parametrize(
    ("argv", "message"), CASES, ids=[" ".join(c[0][:2]) + f" {i}" for i, c in enumerate(CASES)]
)
def test_bad_input_gives_one_line_and_status_2(tmp_path, capsys, argv, message):
    files(tmp_path)
    code = main([a.format(tmp=tmp_path) for a in argv])
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith("unigen: error: ") and err.count("\n") == 1 and "Traceback" not in err
    assert message.format(tmp=tmp_path) in err


def test_changed_settings_and_foreign_checkpoints_are_one_line_errors(tmp_path, capsys, bert_dir):
    (tmp_path / "rows.jsonl").write_text(ROWS)
    a = tmp_path / "a"
    assert main(train_args(bert_dir, tmp_path / "rows.jsonl", a, "train.epochs=1")) == 0
    # the same output folder with other settings
    assert main(train_args(bert_dir, tmp_path / "rows.jsonl", a, "train.epochs=2")) == 2
    err = capsys.readouterr().err
    assert err.startswith("unigen: error: ") and err.count("\n") == 1 and "settings changed" in err
    # a checkpoint of another training run where this one resumes
    assert (
        main(train_args(bert_dir, tmp_path / "rows.jsonl", tmp_path / "x", "train.epochs=1", "seed=1")) == 0
    )
    capsys.readouterr()
    b = tmp_path / "b"
    (b / "checkpoints").mkdir(parents=True)
    main(
        train_args(bert_dir, tmp_path / "rows.jsonl", tmp_path / "k", "train.epochs=1")
        + ["--keep-checkpoint"]
    )
    shutil.copy(tmp_path / "k" / "checkpoints" / "checkpoint.pt", b / "checkpoints" / "checkpoint.pt")
    capsys.readouterr()
    assert main(train_args(bert_dir, tmp_path / "rows.jsonl", b, "train.epochs=1", "seed=7")) == 2
    err = capsys.readouterr().err
    assert err.startswith("unigen: error: ") and err.count("\n") == 1 and "Traceback" not in err
    assert "checkpoint.pt belongs to a different training run" in err


def test_every_user_error_is_a_unigen_error():
    for cls in (ConfigError, DataError, StageError, GenerationError, ModelNotAvailable, CellsFailed):
        assert issubclass(cls, UniGenError)
    assert issubclass(ConfigError, ValueError) and issubclass(
        StageError, RuntimeError
    )  # older except clauses


# ---------------------------------------------------------------- full disks and read-only folders

@pytest.fixture()
def small_disk(tmp_path):
    """A 1 MiB tmpfs (needs root and mount, as in CI, where its absence fails; skipped elsewhere)."""
    import subprocess

    disk = tmp_path / "disk"
    disk.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(disk)], capture_output=True,
                      check=False).returncode != 0:
        missing("cannot mount a tmpfs here (needs root)")
    yield disk
    subprocess.run(["umount", "-l", str(disk)], check=False)


def fill(disk, leave: int) -> None:
    """Fill ``disk`` until at most ``leave`` bytes are free."""
    import os

    with open(disk / "filler", "wb") as f:
        while os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize > leave:
            try:
                f.write(b"\0" * 4096)
                f.flush()
            except OSError:
                break


@pytest.mark.parametrize("leave", [0, 100_000], ids=["full", "fills-mid-run"])
def test_a_full_disk_stops_cleanly_and_the_run_resumes(small_disk, bert_dir, tmp_path, capsys, leave):
    from unigen.tam.model import TaskModel

    (tmp_path / "rows.jsonl").write_text(ROWS)
    fill(small_disk, leave)
    out = small_disk / "t"
    assert main(train_args(bert_dir, tmp_path / "rows.jsonl", out, "train.epochs=2")) == 2
    err = capsys.readouterr().err
    assert err.startswith("unigen: error: ") and err.count("\n") == 1 and "Traceback" not in err
    assert "No space left on device" in err
    assert not [p for p in small_disk.rglob("*") if p.name.startswith(".tmp-")]  # nothing half-written
    assert (out / "manifest.json").is_file() == bool(leave)  # the run had started when the disk filled
    (small_disk / "filler").unlink()
    assert main(train_args(bert_dir, tmp_path / "rows.jsonl", out, "train.epochs=2")) == 0
    assert TaskModel.from_pretrained(out).labels == ("negative", "positive")


def test_a_read_only_folder_is_one_line(small_disk, bert_dir, tmp_path, capsys):
    import subprocess

    (tmp_path / "rows.jsonl").write_text(ROWS)
    subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
    for argv in (train_args(bert_dir, tmp_path / "rows.jsonl", small_disk / "t"),
                 ["run", "--workdir", str(small_disk / "w"), "--quiet"]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith("unigen: error: ") and err.count("\n") == 1 and "Read-only file system" in err
