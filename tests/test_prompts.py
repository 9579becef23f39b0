"""Questions on the terminal answer only to keys pressed for them: the real CLI on a pty (pexpect).

Keys typed while an earlier cell runs (a ``y`` and Enter meant for a password prompt) are discarded right
before a question is shown; ``--step`` needs an explicit answer; end of input means quit.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import pexpect
import pytest

from conftest import FIXTURES, ROOT

ARTIFACTS = ["--report", "r.json", "--junit", "j.xml", "--transcript", "t.log", "--no-release-log"]


@pytest.fixture
def work(tmp_path: Path) -> Path:
    folder = tmp_path / "prompts"
    folder.mkdir()
    for name in ("records/typed-ahead.md", "safety/danger.md"):
        shutil.copy(FIXTURES / name, folder)
    return folder


def _spawn(args: list[str], cwd: Path) -> pexpect.spawn:
    return pexpect.spawn(
        sys.executable,
        ["-m", "runbook_exec.cli", *args, *ARTIFACTS],
        cwd=str(cwd),
        env=dict(os.environ, NO_COLOR="1", PYTHONPATH=str(ROOT)),
        timeout=30,
        encoding="utf-8",
        dimensions=(40, 200),
    )


def _finish(child: pexpect.spawn) -> int:
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus is not None
    return int(child.exitstatus)


def _statuses(work: Path) -> dict[str, str]:
    cells = json.loads((work / "r.json").read_text())["cells"]
    return {c["id"]: c["reason"] or c["status"] for c in cells}


def test_keys_typed_during_an_earlier_cell_never_answer_a_danger_prompt(work: Path) -> None:
    child = _spawn(["typed-ahead.md"], work)
    child.expect_exact("slow cell started")
    child.send("y\r")  # meant for a password prompt that never came
    child.expect_exact("Run it? [y/N]")
    with pytest.raises(pexpect.TIMEOUT):
        child.expect_exact("danger ran", timeout=1.5)
    assert child.isalive()  # still waiting for a fresh answer
    child.sendline("n")
    assert _finish(child) == 1
    assert "danger ran" not in child.before
    assert "down - ✗ refused (declined at the prompt)" in child.before
    assert _statuses(work) == {"slow": "passed", "down": "refused"}
    assert 'message="refused at the confirmation prompt (not run)"' in (work / "j.xml").read_text()
    assert "refused (declined at the prompt)" in (work / "t.log").read_text()


def test_a_fresh_yes_still_runs_the_danger_cell(work: Path) -> None:
    child = _spawn(["typed-ahead.md"], work)
    child.expect_exact("slow cell started")
    child.send("n\r")
    child.expect_exact("Run it? [y/N]")
    child.sendline("y")
    child.expect_exact("danger ran")
    assert _finish(child) == 0


def test_step_needs_an_explicit_answer_and_end_of_input_quits(work: Path) -> None:
    child = _spawn(["danger.md", "--step"], work)
    question = "Run it? [y]es / [s]kip / [q]uit: "
    child.expect_exact(question)
    child.send("\r")  # a stray Enter is not "run"
    child.expect_exact(question)
    child.sendline("maybe")
    child.expect_exact(question)
    child.sendline("y")
    child.expect_exact("✓ before passed")
    child.expect_exact("Run it? [y/N]")
    child.sendeof()
    assert _finish(child) == 1
    assert "danger ran" not in child.before
    assert _statuses(work) == {"before": "passed", "down": "refused"}


def test_step_keys_typed_during_a_cell_do_not_answer_the_next_question(work: Path) -> None:
    child = _spawn(["typed-ahead.md", "--step", "--yes"], work)
    child.expect_exact("[y]es / [s]kip / [q]uit: ")
    child.sendline("y")
    child.expect_exact("slow cell started")
    child.send("y\r")
    child.expect_exact("Run it? [y/N]")
    with pytest.raises(pexpect.TIMEOUT):
        child.expect_exact("danger ran", timeout=1.5)
    child.sendline("s")
    assert _finish(child) == 1
    assert _statuses(work) == {"slow": "passed", "down": "refused"}
