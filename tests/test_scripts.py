"""Every script under scripts/ and experiments/ imports (without running main); the analysis scripts on small
fake stage folders."""

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = sorted([*ROOT.glob("scripts/*.py"), *ROOT.glob("experiments/*.py")])


def load_script(name, folder="experiments"):
    spec = importlib.util.spec_from_file_location(name, ROOT / folder / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("path", SCRIPTS, ids=[f"{p.parent.name}/{p.name}" for p in SCRIPTS])
def test_every_script_imports(path):
    module = load_script(path.stem, path.parent.name)  # the module body runs; main() does not
    assert callable(getattr(module, "main", None)), f"{path} has no main()"


def test_vader_agreement_counts_only_decided_texts():
    la = load_script("label_agreement")
    texts = ["I love it, wonderful!", "Terrible, awful, I hate it.", "The box is blue."]
    assert la.agreement(texts, [1, 0, 1]) == (2 / 3, 1.0)
    assert la.agreement(texts, [0, 1, 0]) == (2 / 3, 0.0)


def test_label_agreement_table_from_stage_folders(tmp_path, monkeypatch):
    la = load_script("label_agreement")
    gen = tmp_path / "01_generate" / "aaa"
    rel = tmp_path / "02_relabel" / "bbb"
    rows = [
        {"text": "I love it, wonderful!", "prompt_label": 1},
        {"text": "Great, great, great.", "prompt_label": 0},
    ]
    kept = [{**rows[0], "label": 1, "keep": True}, {**rows[1], "label": 1, "keep": False}]
    for stage, data, manifest in (
        (
            gen,
            rows,
            {
                "stage": "generate",
                "status": "complete",
                "seed": 3,
                "upstream": {},
                "config": {"generator": "g", "generate": {"prompt_set": "universal", "min_words": 2}},
            },
        ),
        (
            rel,
            kept,
            {
                "stage": "relabel",
                "status": "complete",
                "seed": 3,
                "upstream": {"generate": "aaa"},
                "config": {"relabel": {"mode": "soft"}},
            },
        ),
    ):
        (stage / "shards").mkdir(parents=True)
        (stage / "shards" / "shard-00000.jsonl").write_text("".join(json.dumps(r) + "\n" for r in data))
        (stage / "manifest.json").write_text(json.dumps(manifest))
    out = tmp_path / "table.md"
    monkeypatch.setattr(sys, "argv", ["label_agreement", "--workdir", str(tmp_path), "--out", str(out)])
    la.main()
    table = out.read_text()
    assert (
        "| generate `aaa` | g | universal, 2+ words | 3 | - | 2 | 100% | 50.0% |" in table
    )  # one label wrong
    assert (
        "| relabel `bbb` | g | universal, 2+ words | 3 | soft | 1 | 100% | 100.0% |" in table
    )  # it was dropped


def test_sync_tables_replaces_only_the_report_tables(tmp_path):
    st = load_script("sync_tables")
    tables = tmp_path / "t.md"
    tables.write_text("# T\n\n### Main\n\n| a |\n|---|\n| 2 |\n\nnote\n\n### Other\n\n| b |\n|---|\n| 9 |\n")
    report = tmp_path / "r.md"
    report.write_text("intro\n\n#### Main\n\n| a |\n|---|\n| 1 |\n\nprose | kept\n\n#### Gone\n\n| z |\n\n"
                      "#### Other\nafter\n")
    assert st.main(["--tables", str(tables), "--report", str(report)]) == 1  # 'Gone' has no table
    assert report.read_text() == (
        "intro\n\n#### Main\n\n| a |\n|---|\n| 2 |\n\nprose | kept\n\n#### Gone\n\n| z |\n\n"
        "#### Other\n| b |\n|---|\n| 9 |\n\nafter\n"
    )


def test_scaling_report_groups_sizes_and_seeds(tmp_path):
    sr = load_script("scaling_report")

    def rec(tam, spl, seed, avg):
        return {"tam": tam, "seed": seed, "average": avg, "train_rows": 2 * spl,
                "settings": [f"generate.samples_per_label={spl}"],
                "timings": {"generate+relabel": 10.0, "weight": 2.0, f"train {tam}": 5.0,
                            f"evaluate {tam}": 1.0}}

    records = [rec("minilm-l6", 500, 1, 0.70), rec("minilm-l6", 500, 2, 0.72),
               rec("minilm-l6", 1500, 1, 0.75)]
    (tmp_path / "s.json").write_text(json.dumps(records))
    args = ["--records", str(tmp_path / "s.json"), "--output", str(tmp_path / "s.md"),
            "--points", str(tmp_path / "none.json")]
    assert sr.main(args) == 0
    text = (tmp_path / "s.md").read_text()
    assert "| minilm-l6 | 1,000 | 1,000 | 1,2 | 71.00 ± 1.41 | 10 | 2 | 5 | 1 |" in text
    assert "| minilm-l6 | 3,000 | 3,000 | 1 | 75.00 |" in text
    assert (tmp_path / "s.png").stat().st_size > 1000
    # points measured outside the runner, and hand-written notes that a re-render keeps
    points = [{"tam": "mpnet-base", "rows": 1600, "accuracies": [84.0, 82.0], "train_s": 800},
              {"tam": "minilm-l6", "rows": 1600, "accuracies": [75.0]}]
    (tmp_path / "p.json").write_text(json.dumps(points))
    (tmp_path / "s.md").write_text(text + "\nNotes written by hand.\n")
    args[-1] = str(tmp_path / "p.json")
    assert sr.main(args) == 0
    text = (tmp_path / "s.md").read_text()
    assert "| mpnet-base | 1,600 | 2 | 83.00 ± 1.41 | 84.00 / 82.00 | 800 |" in text
    assert "| minilm-l6 | 1,600 | 1 | 75.00 | 75.00 | - |" in text
    assert text.count(sr.BEGIN) == 1 and text.endswith("Notes written by hand.\n")


def test_relabel_rules_variants_centre_and_filter():
    rr = load_script("relabel_rules")
    y = np.array([0, 0, 1, 1])
    verbalizer = np.array([[1.0, 3.0], [2.0, 2.1], [2.0, 1.0], [1.5, 1.0]])  # -log p(label word), lower wins
    d = {"y": y, "texts": np.array(list("abcd"), dtype=object), "verbalizer": verbalizer,
         "cf": np.array([0.0, 0.5])}
    _, probs, keep, _ = rr.labelling(d, "vc-filter", 0, 0.1, 0.2)
    centred = verbalizer - verbalizer.mean(axis=0)
    assert (probs.argmax(1) == centred.argmin(1)).all()
    assert keep.tolist() == [True, False, True, True]  # row 1 is a near tie after centring
    _, probs, keep, _ = rr.labelling(d, "prompt", 0, 0.1, 0.2)
    assert keep.all() and (probs.argmax(1) == y).all()
    _, _, keep, _ = rr.labelling(d, "v-all", 0, 0.1, 0.2)
    assert keep.all()


def test_chaos_fast_subset(tmp_path):
    """The CI subset of the reliability campaign (scripts/chaos.py): a few SIGKILLs of three tasks at random
    moments and inside writes, and a few damaged caches, end with the reference's rows and model bytes.
    In a subprocess: the campaign forks, which a test process full of threads must not."""
    import os
    import subprocess

    import unigen

    out = tmp_path / "chaos.json"
    env = {**os.environ, "PYTHONPATH": str(Path(unigen.__file__).parents[1])}
    argv = ["--kills", "2", "--corrupt", "3", "--tasks", "generate,train,run", "--no-hostile", "--seed", "1",
            "--workdir", str(tmp_path), "--output", str(out)]
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "chaos.py"), *argv], capture_output=True,
                          text=True, timeout=900, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = json.loads(out.read_text())
    assert set(summary["kills"]) == {"generate", "train", "run"}
    assert all(t["identical"] == t["trials"] and t["kills"] >= 2 for t in summary["kills"].values())
    assert summary["corruption"]["detected"] == summary["corruption"]["tried"] == 3


def test_posthoc_probe_shifts_the_decision_threshold():
    pp = load_script("posthoc_probe")
    probs = {"a@128": np.array([0.9, 0.6, 0.4, 0.1]), "a:y": np.array([1, 0, 0, 0]),
             "b@128": np.array([0.7, 0.2]), "b:y": np.array([1, 1]), "a@40": np.array([0.5] * 4)}
    assert pp.set_names(probs, 128) == ["a", "b"]
    acc, sets, pos = pp.mean_accuracy(probs, 128)
    assert sets == {"a": 75.0, "b": 50.0} and acc == 62.5 and pos == {"a": 50.0, "b": 50.0}
    # shifting the logits by log(0.65 / 0.35) moves 0.6 (logit 0.41) to negative but not 0.7 (0.85)
    acc, sets, pos = pp.mean_accuracy(probs, 128, shift=float(np.log(0.65 / 0.35)))
    assert sets == {"a": 100.0, "b": 50.0} and pos == {"a": 25.0, "b": 50.0}
