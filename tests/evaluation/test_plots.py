"""Per-set accuracy bars: `unigen evaluate --plot` and the drawing itself."""

from __future__ import annotations

import pytest

from unigen.cli import main
from unigen.evaluation.paper import PAPER_PROMPTING, TEST_SETS, set_dict
from unigen.evaluation.plots import plot_accuracy

from capabilities import need

PNG = b"\x89PNG\r\n\x1a\n"


def _result(*accs):
    sets = ("sst2", "imdb", "tweet")
    out = {s: {"accuracy": a, "macro_f1": a - 0.02, "n": 100} for s, a in zip(sets, accs)}
    out["average"] = sum(accs) / len(accs)
    return out


def test_plot_draws_every_row(tmp_path):
    need("matplotlib")
    rows = {"UniGen minilm-l6": _result(0.8, 0.7, 0.6), "UniGen lstm": _result(0.7, 0.65, 0.55),
            "VADER": _result(0.69, 0.7, 0.6), "Prompting smollm2-135m (verbalizer)": _result(0.75, 0.7, 0.7)}
    path = plot_accuracy(rows, tmp_path / "acc.png", paper=set_dict(PAPER_PROMPTING))
    data = path.read_bytes()
    assert data.startswith(PNG) and len(data) > 10_000
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert width > height > 300
    assert not list(tmp_path.glob(".tmp-*"))


def test_evaluate_plot_option(tmp_path, labelled_jsonl, capsys):
    need("matplotlib")
    png = tmp_path / "vader.png"
    assert main(["evaluate", "--model", "vader", "--datasets", str(labelled_jsonl), "--plot", str(png)]) == 0
    assert f"wrote {png}" in capsys.readouterr().out
    assert png.read_bytes().startswith(PNG)


def test_the_plotted_paper_mean_covers_the_plotted_sets_only():
    from unigen.evaluation.plots import paper_values

    paper = set_dict(PAPER_PROMPTING)
    assert paper_values(paper, ["sst2"]) == [82.15, 82.15]  # not 78.25, the paper's seven-set mean
    assert paper_values(paper, ["sst2", "cr"]) == pytest.approx([82.15, 80.30, (82.15 + 80.30) / 2])
    assert paper_values(paper, list(TEST_SETS))[-1] == 78.25
    values = paper_values(paper, ["sst2", "mine.jsonl"])
    assert values[0] == 82.15 and all(v != v for v in values[1:])  # NaN: no bar
