"""The command line end to end: `unigen run` with its Prompting row, --method/--domain, `unigen models` and
`unigen status` with stages present, `unigen evaluate --workdir` under the work-folder lock, `unigen serve`
answering over HTTP, and the settings the config refuses, each in one line with exit status 2."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from unigen.cli import main
from unigen.config import load_config
from unigen.config.presets import tiny_run_settings
from unigen.errors import ConfigError
from unigen.stages import stage_status

SRC = Path(__file__).resolve().parents[2] / "src"


def sets(*settings: str) -> list[str]:
    return [x for s in settings for x in ("--set", s)]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, tiny_lm_dir):
    """A tiny `unigen run` whose relabel rule is chosen at run time (``auto``) and with a Prompting row."""
    work = tmp_path_factory.mktemp("cli-run") / "work"
    data = work.parent / "data.jsonl"
    data.write_text("".join(json.dumps({"text": t, "label": i % 2}) + "\n"
                            for i, t in enumerate(["awful boring film", "i love this movie", "bad review",
                                                   "great product"])))
    settings = tiny_run_settings(tiny_lm_dir, data, "relabel.scoring_rule=auto",
                                 "run.baselines=[vader,prompt]", "run.prompt_limit=4",
                                 "generate.backend=transformers", "scoring.backend=transformers")
    assert main(["run", "--workdir", str(work), "--quiet", *sets(*settings)]) == 0
    return work


def test_run_names_the_task_model_it_ships(tiny_run, capsys):
    model = json.loads((tiny_run / "run.json").read_text())["model"]
    assert model and (Path(model) / "unigen_tam.json").is_file()
    # a second run is all cached; it prints the table and where the model is
    assert main(["run", "--workdir", str(tiny_run), "--quiet",
                 "--config", str(tiny_run / "config.yaml")]) == 0
    out = capsys.readouterr().out
    # train.tam (mpnet-base) is not trained in the tiny run: the first task model is the product
    assert f"The task model (UniGen lstm): {model}" in out and f"unigen serve {model}" in out


def test_the_prompting_row_uses_the_rule_the_relabel_stage_recorded(tiny_run, tiny_lm_dir):
    (relabel,) = [s for s in stage_status(tiny_run) if s["stage"] == "02_relabel"]
    recorded = json.loads((Path(relabel["path"]) / "manifest.json").read_text())["rule"]
    rows = json.loads((tiny_run / "results.json").read_text())
    assert recorded in ("nll", "verbalizer")
    assert f"Prompting {tiny_lm_dir} ({recorded})" in rows  # the labeler the task model learnt from
    assert set(rows) == {"UniGen lstm", "VADER", f"Prompting {tiny_lm_dir} ({recorded})"}


def test_the_prompting_rule_is_read_from_the_relabel_manifest(tmp_path):
    """With the setting saying verbalizer and the folder saying nll, the row follows the folder."""
    from unigen.pipeline import prompting_config
    from unigen.stages import open_stage

    stage = open_stage("relabel", {"x": 1}, path=tmp_path / "relabel")
    stage.finish({"kept": 0}, rule="nll")
    cfg = load_config(None, ["relabel.scoring_rule=verbalizer"])
    assert prompting_config(cfg, stage.path).scoring.rule == "nll"
    assert prompting_config(cfg, tmp_path / "missing").scoring.rule == "verbalizer"  # nothing recorded
    assert prompting_config(load_config(None, ["run.prompt_rule=verbalizer"]), stage.path).scoring.rule \
        == "verbalizer"  # an explicit rule wins


def test_status_lists_the_stages_present(tiny_run, capsys):
    capsys.readouterr()
    assert main(["status", "--workdir", str(tiny_run)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["stage", "fingerprint", "status", "seconds", "counts"]
    stages = [line.split()[0] for line in out[1:]]
    assert {"01_generate", "02_relabel", "03_weight", "04_train", "05_evaluate"} == set(stages)
    assert all(line.split()[2] == "complete" for line in out[1:])


def test_models_lists_every_embedded_model(capsys, monkeypatch, tmp_path):
    from unigen.registry import EMBEDDED

    monkeypatch.setenv("UNIGEN_CACHE", str(tmp_path / "cache"))
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in EMBEDDED) and f"cache: {tmp_path / 'cache'}" in out


def test_method_and_domain_reach_the_run(monkeypatch, tmp_path):
    import unigen.pipeline

    seen = []

    def fake_run(cfg, workdir, **kwargs):
        seen.append(cfg)
        Path(workdir, "results.md").write_text("table\n")
        return {}

    monkeypatch.setattr(unigen.pipeline, "run_pipeline", fake_run)
    argv = ["--workdir", str(tmp_path), "--quiet"]
    assert main(["run", "--method", "zerogen", "--domain", "movie", *argv]) == 0
    cfg = seen[-1]
    assert (cfg.run.method, cfg.run.domain, cfg.generate.prompt_set) == ("zerogen", "movie", "movie")
    assert cfg.relabel.mode == "none" and not cfg.weight.enabled  # the preset is applied
    assert main(["run", "--method", "sungen", "--domain", "movie", "--workdir", str(tmp_path), "--quiet",
                 "--set", "run.domain=tweet"]) == 0
    assert seen[-1].generate.prompt_set == "tweet"  # --set comes after the shortcuts and wins


def test_method_errors_are_one_line(tmp_path, capsys):
    assert main(["run", "--method", "zerogen", "--workdir", str(tmp_path), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("unigen: error:") and "run.domain" in err and err.count("\n") == 1


def test_evaluate_with_a_workdir_takes_the_lock(tmp_path, labelled_jsonl, capsys):
    from unigen.lock import workdir_lock

    argv = ["evaluate", "--model", "vader", "--datasets", str(labelled_jsonl), "--workdir", str(tmp_path),
            "--quiet"]
    code = ("import sys, time\nfrom unigen.lock import workdir_lock\nwith workdir_lock(sys.argv[1]):\n"
            "    print('held', flush=True)\n    sys.stdin.read()\n")
    holder = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(SRC)})
    try:
        assert holder.stdout.readline().strip() == "held"
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert "is in use by another unigen process" in err and err.count("\n") == 1
    finally:
        holder.communicate("")
    assert main(argv) == 0  # free again: the metrics are cached in the work folder
    assert list(tmp_path.glob("05_evaluate/*/metrics.json"))
    with workdir_lock(tmp_path):  # the same process may nest it (unigen experiment does)
        assert main(argv) == 0


@pytest.mark.parametrize("setting, named", [
    ("train.predict_max_length=0", "train.predict_max_length"),
    ("train.lstm_hidden=0", "train sizes must be positive"),
    ("generate.top_p=0", "generate.top_p"),
    ("train.valid_fraction=1.0", "train.valid_fraction"),
    ("weight.keep_top=0", "weight.keep_top"),
    ("run.tams=[]", "run.tams"),
    ("run.domain=movie", "run.domain is for zerogen and sungen"),
    ("labels=[good,good]", "labels must be distinct"),
])
def test_invalid_settings_are_one_line_with_status_2(setting, named, capsys):
    with pytest.raises(ConfigError, match=named):
        load_config(None, [setting])
    assert main(["config", "--set", setting]) == 2
    err = capsys.readouterr().err
    assert err.startswith("unigen: error:") and named in err and err.count("\n") == 1


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_serve_answers_over_http(tiny_lstm, tmp_path):
    """`unigen serve MODEL` as a user starts it: the server comes up and classifies texts."""
    pytest.importorskip("uvicorn")
    _, folder = tiny_lstm
    port = _free_port()
    server = subprocess.Popen([sys.executable, "-m", "unigen", "serve", str(folder), "--port", str(port),
                               "--quiet"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              env={**os.environ, "PYTHONPATH": str(SRC)})
    try:
        for _ in range(600):  # up to a minute for the start on a busy machine
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as r:
                    if r.status == 200:
                        break
            except OSError:
                assert server.poll() is None, server.stdout.read()
                time.sleep(0.1)
        request = urllib.request.Request(f"http://127.0.0.1:{port}/predict", method="POST",
                                         data=json.dumps({"texts": ["great movie", "awful film"]}).encode(),
                                         headers={"content-type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as r:
            answer = json.loads(r.read())
        assert [p["label"] for p in answer["predictions"]] == ["positive", "negative"]
        assert answer["model"] == "pytorch"
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert "serving pytorch model" in server.stdout.read()
