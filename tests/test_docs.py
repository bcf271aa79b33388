"""The documentation is checked: README.md fits on a screen, every command block marked runnable runs, and
every relative link points at a file that exists."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
#: a fenced bash block right after the line ``<!-- runnable -->``
RUNNABLE = re.compile(r"^<!-- runnable -->\n```(?:bash|sh)\n(.*?)^```", re.S | re.M)
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def runnable_blocks() -> list[tuple[str, str]]:
    return [(f"{page.relative_to(ROOT)}:{page.read_text(encoding='utf-8')[:m.start()].count(chr(10)) + 1}",
             m.group(1)) for page in PAGES for m in RUNNABLE.finditer(page.read_text(encoding="utf-8"))]


def test_the_readme_fits_on_a_screen_and_starts_with_the_two_commands():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 250
    first_block = text.split("```bash\n", 1)[1].split("```", 1)[0]
    assert "bash scripts/setup.sh && .venv/bin/unigen run" in first_block
    test_command = "bash scripts/setup.sh --dev && .venv/bin/ruff check . && .venv/bin/python -m pytest"
    assert test_command in first_block


def test_the_docs_have_runnable_blocks():
    assert len(runnable_blocks()) >= 3
    assert RUNNABLE.search("<!-- runnable -->\n```bash\nunigen models\n```\n").group(1) == "unigen models\n"


@pytest.mark.parametrize(("where", "block"), runnable_blocks(), ids=[w for w, _ in runnable_blocks()])
def test_a_runnable_block_runs(where, block, tmp_path):
    """The block runs as written in bash (``set -euo pipefail``) from the repository root, with ``unigen``
    this checkout's command line, no network, a fresh model cache and ``$TMPDIR`` an empty folder."""
    script = f'set -euo pipefail\nunigen() {{ "{sys.executable}" -m unigen "$@"; }}\n{block}'
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]),
           "TMPDIR": str(tmp_path), "UNIGEN_CACHE": str(tmp_path / "cache"), "HF_HUB_OFFLINE": "1",
           "NO_PROXY": "*"}
    out = subprocess.run(["bash", "-c", script], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, (f"{where}:\n{block}\nstdout: {out.stdout[-2000:]}\n"
                                 f"stderr: {out.stderr[-2000:]}")


def relative_links(page: Path) -> list[str]:
    text = re.sub(r"```.*?```", "", page.read_text(encoding="utf-8"), flags=re.S)  # not inside code blocks
    return [t for t in LINK.findall(text) if not re.match(r"[a-z]+:", t) and not t.startswith("#")]


def test_every_relative_link_points_at_a_file():
    missing = [f"{page.relative_to(ROOT)}: {target}" for page in PAGES for target in relative_links(page)
               if not (page.parent / target.split("#", 1)[0]).exists()]
    assert not missing, "links to files that do not exist:\n" + "\n".join(missing)


def test_the_link_check_sees_a_missing_file(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("[ok](page.md) [web](https://example.org) [anchor](#x) [gone](nothing.md#part)\n")
    assert relative_links(page) == ["page.md", "nothing.md#part"]
