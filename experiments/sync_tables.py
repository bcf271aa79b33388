"""Copy the tables of ``results/paper_table.md`` into the report ``results/README.md``.

Every ``#### <title>`` heading of the report whose title is a ``### <title>`` section of the table file gets
that section's table; the prose around the tables is left alone. A heading of the report with no section of
that title is reported, not removed.

    python experiments/sync_tables.py [--tables results/paper_table.md] [--report results/README.md]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def tables_by_title(text: str) -> dict[str, list[str]]:
    """``{title: table lines}`` for every ``### title`` section that has a Markdown table."""
    out: dict[str, list[str]] = {}
    title = None
    for line in text.splitlines():
        if line.startswith("### "):
            title = line[4:].strip()
        elif title is not None and line.startswith("|"):
            out.setdefault(title, []).append(line)
        elif title is not None and title in out:
            title = None  # the table ended
    return out


def sync(report: str, tables: dict[str, list[str]]) -> tuple[str, list[str]]:
    """The report with each ``#### title`` table replaced; also the titles that had no table."""
    lines = report.splitlines()
    out: list[str] = []
    missing: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        out.append(line)
        i += 1
        if not line.startswith("#### "):
            continue
        title = line[5:].strip()
        if title not in tables:
            missing.append(title)
            continue
        while i < len(lines) and not lines[i].strip():  # the blank line(s) before the table
            out.append(lines[i])
            i += 1
        had_table = i < len(lines) and lines[i].startswith("|")
        while i < len(lines) and lines[i].startswith("|"):  # drop the old table
            i += 1
        out.extend(tables[title])
        if not had_table and i < len(lines):
            out.append("")
    return "\n".join(out) + "\n", missing


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tables", default="results/paper_table.md")
    p.add_argument("--report", default="results/README.md")
    args = p.parse_args(argv)
    report = Path(args.report)
    text, missing = sync(report.read_text(), tables_by_title(Path(args.tables).read_text()))
    report.write_text(text)
    for title in missing:
        print(f"no table titled {title!r} in {args.tables}", file=sys.stderr)
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main())
