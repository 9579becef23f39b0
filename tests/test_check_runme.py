"""Runme compatibility: Markdown annotated for Runme runs unchanged and selects the cells Runme would.

Each ``tests/fixtures/runme/NN-name.md`` was written from Runme's documented syntax; its ``.expected``
sidecar lists, in order, the cells a whole-file run includes (``all:``; Runme's "Run All", i.e.
``runme run --all --allow-unnamed``) and those ``--tag T`` selects (``tag T:``; Runme's ``--tag``/``--category``).
Cells are named by id, or ``line-N`` when unnamed. Selection goes through the real planner.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from runbook_exec import check, document
from runbook_exec.errors import RunbookError
from runbook_exec.plan import Options, Selection, build

FIXTURES = Path(__file__).parent / "fixtures" / "runme"


def _expected(fixture: Path) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for raw in fixture.with_suffix(".expected").read_text(encoding="utf-8").splitlines():
        if raw.strip():
            key, _, cells = raw.partition(":")
            out[key.strip()] = cells.split()
    return out


def _selected(book: document.Runbook, selection: Selection) -> list[str]:
    try:
        plan = build(book, selection, Options(environ={}))
    except RunbookError as exc:
        if "nothing to run" in str(exc) or "no executable cell has tag" in str(exc):
            return []
        raise
    return [c.label for c in plan.cells]


CASES = [
    (fixture, key, cells) for fixture in sorted(FIXTURES.glob("*.md")) for key, cells in _expected(fixture).items()
]


@pytest.mark.parametrize(
    ("fixture", "key", "cells"), CASES, ids=[f"{f.stem}-{k.replace(' ', '-')}" for f, k, _ in CASES]
)
def test_runme_selection(fixture: Path, key: str, cells: list[str]) -> None:
    book = document.parse(str(fixture))
    assert book.runme
    assert not book.problems, book.problems
    if key == "all":
        assert _selected(book, Selection()) == cells
        return
    tag = key.removeprefix("tag ").strip()
    got = _selected(book, Selection(tags=(tag,)))
    assert got == cells


def test_runme_attributes_run_but_check_warns_about_json(capsys: pytest.CaptureFixture[str]) -> None:
    fixture = FIXTURES / "03-json-attributes.md"
    assert check.main([str(fixture), "--skip", "shellcheck"]) == 1
    out = capsys.readouterr().out
    assert [line.split()[1] for line in out.splitlines()] == ["RX113", "RX113", "RX113"]


def test_runme_name_form_is_clean_for_check(capsys: pytest.CaptureFixture[str]) -> None:
    fixture = FIXTURES / "02-detected-by-name.md"
    assert check.main([str(fixture)]) == 0, capsys.readouterr().out


def test_plain_markdown_without_annotations_runs_nothing() -> None:
    # Runme would run any shell fence of any Markdown file; here a file must opt in (.exec or Runme keys).
    book = document.parse_text("# Notes\n\n```bash\necho example\n```\n", "notes.md")
    assert not book.runme
    assert not book.executable_cells()
