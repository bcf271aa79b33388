"""Files are written with the mode the umask gives a new file (0644 under umask 022), not the atomic
writer's temporary 0600, so a model folder or an export copied for a service running as another user is
readable by it."""

from __future__ import annotations

import contextlib
import os
import stat

import pytest

from unigen.files import atomic_folder, atomic_write, atomic_write_text, current_umask

from capabilities import need
from tam_helpers import LABELS, fake_vectors, sentiment_rows


@contextlib.contextmanager
def umask(mask: int):
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def modes(folder) -> dict[str, int]:
    return {p.relative_to(folder).as_posix(): stat.S_IMODE(p.stat().st_mode)
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize(("mask", "mode"), [(0o022, 0o644), (0o027, 0o640), (0o077, 0o600)])
def test_atomic_writers_follow_the_umask(tmp_path, mask, mode):
    with umask(mask):
        assert current_umask() == mask
        atomic_write_text(tmp_path / "a.txt", "text")
        atomic_write(tmp_path / "deep" / "b.bin", lambda f: f.write(b"\x00"))
        with atomic_folder(tmp_path / "folder", last="record.json") as tmp:
            (tmp / "record.json").write_text("{}")
            atomic_write_text(tmp / "card.md", "card")
    assert set(modes(tmp_path).values()) == {mode}, modes(tmp_path)


def test_model_folder_and_onnx_export_are_readable_by_others(tmp_path):
    from unigen.export.onnx_export import export_onnx
    from unigen.tam.model import TaskModel

    rows = sentiment_rows(8)
    model = TaskModel.build("lstm", LABELS, texts=[r["text"] for r in rows], vectors=fake_vectors(),
                            lstm_hidden=4, projection_dim=8, seed=0)
    with umask(0o022):
        saved = model.save_pretrained(tmp_path / "model")
        exported = export_onnx(saved, tmp_path / "onnx", check=False)
    for folder in (saved, exported):
        found = modes(folder)
        assert found and set(found.values()) == {0o644}, found


def test_plots_are_readable_by_others(tmp_path):
    need("matplotlib")
    from unigen.evaluation.plots import plot_accuracy

    with umask(0o022):
        path = plot_accuracy({"m": {"sst2": {"accuracy": 0.8}, "average": 0.8}}, tmp_path / "p.png")
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
