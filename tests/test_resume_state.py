"""The resume state file: what reaches the disk when, and what --resume and the next run read back."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path

import pytest

from runbook_exec.records.results import FAILED, PASSED, CellResult
from runbook_exec.run import resume


def _result(line: int, label: str, status: str = PASSED) -> CellResult:
    return CellResult(label, label, "s", line, "success", status, 0, 1, 0.01, datetime.now(UTC))


def _lines(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture
def here(tmp_path: Path) -> Path:
    cwd = Path.cwd()
    os.chdir(tmp_path)
    yield tmp_path
    os.chdir(cwd)


def test_a_cell_that_starts_alone_is_on_disk_before_it_runs_even_after_a_masked_label(here: Path) -> None:
    path = here / "s.jsonl"
    recorder = resume.Recorder(path, {"cwd": str(here), "exports": ""})
    recorder.begin("deploy", "deploy", "s", 3)
    recorder.cell(_result(3, "***"), str(here), "")  # the result's label was masked
    recorder.begin("down", "down", "s", 9)  # after a question: nothing else is pending
    assert _lines(path)[-1]["begin"] == "down"


def test_a_pipelined_start_is_written_with_the_previous_result(here: Path) -> None:
    path = here / "s.jsonl"
    recorder = resume.Recorder(path, {"cwd": str(here), "exports": ""})
    recorder.begin("a", "a", "s", 3)
    recorder.begin("b", "b", "s", 5)  # sent to bash as soon as a ended, before a's result is recorded
    assert [line.get("begin") for line in _lines(path)] == [None, "a"]
    recorder.cell(_result(3, "a"), str(here), "")
    assert [(line.get("cell"), line.get("begin")) for line in _lines(path)[1:]] == [
        (None, "a"),
        (None, "b"),
        ("a", None),
    ]


def test_state_is_private_and_deleted_when_the_run_passes(here: Path) -> None:
    path = here / ".runbook" / "state" / "s.jsonl"
    recorder = resume.Recorder(path, {"cwd": str(here), "exports": 'declare -x DSN="clear"\n'})
    assert path.stat().st_mode & 0o777 == 0o600
    recorder.close(PASSED)
    assert not path.exists()


def test_resume_point_of_a_run_whose_runner_died_is_the_first_cell_still_running(here: Path) -> None:
    book = here / "book.md"
    book.write_text("# B\n")
    path = resume.state_path(str(book), ("all",))
    header = resume.header(
        runbook=str(book),
        sha256="0" * 64,
        selection=("all",),
        variables={"TAG": "2026.01.14"},
        cwd=str(here),
        exports='declare -x STAGE="start"\n',
        artifacts={k: here / k for k in ("dir", "transcript", "report", "junit")},
        release_log=None,
        release_template=None,
    )
    recorder = resume.Recorder(path, header)
    recorder.begin("a", "a", "s", 3)
    recorder.begin("a", "a", "s", 3)  # a retry
    recorder.cell(_result(3, "a"), str(here / "w"), 'declare -x STAGE="a"\n')
    recorder.begin("b", "b", "s", 5)
    # no end line: the runner died while b ran
    saved = resume.load(str(book), ("all",))
    assert (saved.failed_cell, saved.cwd, saved.exports) == ("b", str(here / "w"), 'declare -x STAGE="a"\n')
    [item] = resume.unfinished(str(book))
    assert item.running == "b"
    assert [(c.id, c.status) for c in item.report.cells] == [("a", PASSED), ("b", "interrupted")]
    assert item.report.status == "aborted" and item.report.exit_code is None
    resume.mark_recorded(item)
    assert resume.unfinished(str(book)) == []
    assert resume.load(str(book), ("all",)).failed_cell == "b"  # still resumable


def test_a_failed_resumed_run_keeps_the_exports_it_started_with(here: Path) -> None:
    book = here / "book.md"
    book.write_text("# B\n")
    path = resume.state_path(str(book), ("all",))
    recorder = resume.Recorder(path, {"cwd": str(here / "w"), "exports": 'declare -x STAGE="a"\n'})
    recorder.begin("b", "b", "s", 5)
    recorder.cell(_result(5, "b", FAILED), str(here / "w"), 'declare -x STAGE="a"\n')
    recorder.close(FAILED)
    saved = resume.load(str(book), ("all",))
    assert (saved.failed_cell, saved.cwd, saved.exports) == ("b", str(here / "w"), 'declare -x STAGE="a"\n')
