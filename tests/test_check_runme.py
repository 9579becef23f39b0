"""``check`` on Runme-annotated Markdown: the file runs as Runme runs it, and what is doubtful is a warning.

The fixtures are the folders of ``tests/fixtures/runme/`` (see ``test_runme.py`` for their runs).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from runbook_exec.doc import document
from runbook_exec.lint import check

FIXTURES = Path(__file__).parent / "fixtures" / "runme"


def _codes(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, list[tuple[str, str]]]:
    status = check.main([*args, "--skip", "shellcheck"])
    out = capsys.readouterr().out
    return status, [(line.split()[0].rsplit(":", 2)[0], line.split()[1]) for line in out.splitlines()]


def test_runme_attributes_run_but_check_warns_about_json(capsys: pytest.CaptureFixture[str]) -> None:
    status, found = _codes(capsys, str(FIXTURES / "13-json-attributes" / "README.md"))
    assert status == 1
    assert [code for _, code in found] == ["RX113", "RX113", "RX113"]


def test_runme_name_form_is_clean_for_check(capsys: pytest.CaptureFixture[str]) -> None:
    fixture = FIXTURES / "12-detected-by-name" / "README.md"
    assert check.main([str(fixture)]) == 0, capsys.readouterr().out


def test_unknown_keys_and_unusable_values_are_warnings(capsys: pytest.CaptureFixture[str]) -> None:
    status, found = _codes(capsys, str(FIXTURES / "02-attributes" / "README.md"), "--fail-on", "error")
    assert status == 0  # warnings only: a Runme file is never refused for its attributes
    rx115 = [where for where, code in found if code == "RX115"]
    assert [w.rsplit(":", 1)[1] for w in rx115] == ["3", "3", "11", "11"]


def test_unclosed_fence_and_generated_names_are_warnings(capsys: pytest.CaptureFixture[str]) -> None:
    status, found = _codes(capsys, str(FIXTURES / "01-names" / "README.md"), "--fail-on", "error")
    assert status == 0
    codes = [code for _, code in found]
    assert codes.count("RX116") == 1
    assert codes.count("RX110") == 9  # every cell but the one with name=


def test_unclosed_fence_is_still_an_error_for_exec_runbooks() -> None:
    book = document.parse_text("# T\n\n```bash {#a .exec}\necho a\n", "t.md")
    assert not book.runme
    assert [p.code for p in book.problems] == ["RX104"]


def test_runme_flag_reads_any_markdown_as_runme() -> None:
    text = "# Notes\n\n```bash\necho example\n```\n"
    assert not document.parse_text(text, "notes.md").executable_cells()
    forced = document.parse_text(text, "notes.md", runme_mode=True)
    assert [c.id for c in forced.executable_cells()] == ["echo-example"]


def test_plain_markdown_without_annotations_runs_nothing() -> None:
    # Runme would run any shell fence of any Markdown file; here a file opts in (.exec, Runme keys, --runme).
    book = document.parse_text("# Notes\n\n```bash\necho example\n```\n", "notes.md")
    assert not book.runme
    assert not book.executable_cells()


@pytest.mark.parametrize("value", [".nan", ".inf", "-5", "0"])
def test_front_matter_timeout_must_be_a_positive_finite_number(
    value: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    runbook = tmp_path / "t.md"
    runbook.write_text(f"---\nrunbook:\n  timeout: {value}\n---\n\n```bash {{#a .exec}}\necho a\n```\n")
    book = document.parse(str(runbook))
    assert [p.line for p in book.problems] == [3]
    assert "must be a positive number of seconds" in book.problems[0].message
    status, found = _codes(capsys, str(runbook))
    assert status == 1 and ("RX202" in [code for _, code in found])
