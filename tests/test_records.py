"""Every run leaves its record, whatever ends it: a hung-up terminal, a reader that stops early, kill -9,
an output path that cannot be written. Each case drives the real CLI (on a pty where a terminal matters).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from xml.etree import ElementTree as ET

import pexpect
import pytest

from runbook_exec.records import release_log

from conftest import FIXTURES, ROOT, run_cli, start_until, wait_exit

RECORDS = FIXTURES / "records"
ARTIFACTS = ["--report", "r.json", "--junit", "j.xml", "--transcript", "t.log"]


@pytest.fixture
def work(tmp_path: Path) -> Path:
    folder = tmp_path / "records"
    shutil.copytree(RECORDS, folder)
    (folder / "release.log").touch()
    return folder


def _statuses(report: Path) -> dict[str, str]:
    cells = json.loads(report.read_text())["cells"]
    return {c["id"]: c["reason"] or c["status"] for c in cells}


def _env() -> dict[str, str]:
    return dict(os.environ, NO_COLOR="1", PYTHONPATH=str(ROOT))


def _hang_up_at(args: list[str], work: Path, text: str) -> int:
    """Run the CLI on a pty; once ``text`` shows, the terminal goes away (SSH dropped): the kernel sends
    SIGHUP and later writes to it fail with EIO. Returns the exit status."""
    child = pexpect.spawn(
        sys.executable, ["-m", "runbook_exec.cli", *args], cwd=str(work), env=_env(), timeout=30, encoding="utf-8"
    )
    child.expect_exact(text)
    os.close(child.child_fd)
    child.closed = True
    return wait_exit(child.pid)


def test_sighup_mid_cell_is_handled_like_sigterm_and_leaves_every_record(work: Path) -> None:
    t0 = time.monotonic()
    assert _hang_up_at(["hangup.md", *ARTIFACTS], work, "long cell started") == 129
    assert time.monotonic() - t0 < 15
    assert _statuses(work / "r.json") == {
        "prepare": "passed",
        "long": "interrupted",
        "next": "skipped",
        "collect": "passed",
        "always": "passed",
    }
    assert (work / "collect.ran").exists() and (work / "always.ran").exists()
    assert not (work / "next.ran").exists()
    assert "collecting logs, line 300" in (work / "t.log").read_text()
    ET.parse(work / "j.xml")
    [record] = release_log.records(work / "release.log")
    assert record.status == "interrupted" and record.meta["exit_code"] == 129
    assert record.meta["failed_step"] == "long"


def test_a_hang_up_at_a_danger_prompt_refuses_the_cell_and_still_runs_failure_cells(work: Path) -> None:
    assert _hang_up_at(["danger-collect.md", *ARTIFACTS], work, "Run it? [y/N]") == 129
    assert _statuses(work / "r.json") == {"before": "passed", "down": "refused", "collect": "passed"}
    assert not (work / "down.ran").exists() and (work / "collect.ran").exists()
    [record] = release_log.records(work / "release.log")
    assert record.status == "interrupted" and record.meta["failed_step"] == "down"


RUNNER = f"{sys.executable} -m runbook_exec.cli pipe.md {' '.join(ARTIFACTS)}"


def _bash(command: str, work: Path) -> subprocess.CompletedProcess[str]:
    """The runner started the way an operator's shell starts it (pipes, closed descriptors)."""
    return subprocess.run(
        ["bash", "-c", command], cwd=work, env=_env(), capture_output=True, text=True, timeout=60, check=False
    )


def test_a_reader_that_stops_early_never_stops_the_run(work: Path) -> None:
    proc = _bash(f"{RUNNER} 2>err.txt | head -3; echo runner=${{PIPESTATUS[0]}}", work)
    assert proc.stdout.splitlines()[-1] == "runner=0", proc.stdout + (work / "err.txt").read_text()
    assert len(proc.stdout.splitlines()) == 4  # what head read, and the exit status
    assert (work / "last.ran").exists()
    assert _statuses(work / "r.json") == {"many": "passed", "pause": "passed", "last": "passed"}
    assert "last cell ran" in (work / "t.log").read_text()
    assert [r.status for r in release_log.records(work / "release.log")] == ["passed"]
    err = (work / "err.txt").read_text()
    assert "Traceback" not in err and "Exception" not in err


def test_a_closed_stdout_never_stops_the_run(work: Path) -> None:
    proc = _bash(f"exec {RUNNER} >&-", work)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    assert (work / "last.ran").exists()
    assert [r.status for r in release_log.records(work / "release.log")] == ["passed"]


def _aborted_run(work: Path) -> tuple[str, str]:
    """Start aborted.md, kill -9 the runner while its second cell runs; return (project, password)."""
    project = "proj-" + os.urandom(5).hex()
    password = "pw-" + os.urandom(12).hex()
    (work / "app.env").write_text(f"COMPOSE_PROJECT_NAME={project}\nDB_PASSWORD={password}\n")
    proc, _ = start_until(["aborted.md", *ARTIFACTS], work, b"deploying")
    # The transcript reaches the disk within half a second even while the cell is quiet (a generous bound
    # here: the machine may be busy).
    deadline = time.monotonic() + 10
    while b"(waiting)" not in (work / "t.log").read_bytes():
        assert time.monotonic() < deadline, "the running cell's output never reached the transcript file"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return project, password


def test_kill_9_then_resume_records_the_aborted_run_and_continues_at_its_cell(work: Path) -> None:
    project, password = _aborted_run(work)
    assert release_log.records(work / "release.log") == []
    (work / "go.ok").touch()
    second = run_cli(["aborted.md", "--resume", *ARTIFACTS], cwd=work, env={"NO_COLOR": "1"})
    assert second.returncode == 0, second.stdout + second.stderr
    assert "recorded as aborted" in second.stderr and "deploy was running" in second.stderr
    assert "resuming at deploy" in second.stdout
    assert "state restored" in second.stdout
    assert "dsn=postgres://app:***@db/app" in second.stdout
    aborted, passed = release_log.records(work / "release.log")
    assert aborted.status == "aborted" and aborted.meta["failed_step"] == "deploy"
    assert aborted.meta["exit_code"] is None
    assert "deploying *** from *** (waiting)" in aborted.body  # the running cell's last lines, masked
    assert passed.status == "passed"
    everything = (work / "release.log").read_text() + second.stdout + second.stderr + (work / "t.log").read_text()
    assert password not in everything and project not in everything
    # The state held values in clear; the run passed, so it is gone.
    assert list((work / ".runbook" / "state").glob("*.jsonl")) == []


def test_any_later_run_of_the_runbook_records_the_aborted_run_once_and_it_stays_resumable(work: Path) -> None:
    _aborted_run(work)
    other = run_cli(
        ["aborted.md", "--cell", "other", "--report", "o.json", "--junit", "o.xml", "--transcript", "o.log"], cwd=work
    )
    assert other.returncode == 0, other.stderr
    assert "recorded as aborted" in other.stderr
    again = run_cli(
        ["aborted.md", "--cell", "other", "--report", "o.json", "--junit", "o.xml", "--transcript", "o.log"], cwd=work
    )
    assert "recorded as aborted" not in again.stderr
    assert [r.status for r in release_log.records(work / "release.log")] == ["aborted", "passed", "passed"]
    # The aborted run had no report yet: it gets one, and its running cell is the one that failed.
    assert _statuses(work / "r.json") == {"setup": "passed", "deploy": "interrupted"}
    assert json.loads((work / "r.json").read_text())["aborted"] is True
    (work / "go.ok").touch()
    resumed = run_cli(["aborted.md", "--resume", *ARTIFACTS], cwd=work)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "state restored" in resumed.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--release-log", "/proc/version"], "/proc/version: cannot write the release log"),
        (["--release-log", "folder"], "pipe.md: release log folder: is a directory"),
        (["--report", "hangup.md/r.json"], "hangup.md/r.json: cannot create its folder for --report"),
        (["--junit", "folder"], "folder: is a directory (--junit needs a file path)"),
        (["--transcript", "/proc/t.log"], "/proc/t.log: cannot write (--transcript)"),
    ],
    ids=[
        "release-log-read-only",
        "release-log-directory",
        "report-under-a-file",
        "junit-directory",
        "transcript-read-only",
    ],
)
def test_an_output_path_that_cannot_be_written_is_refused_before_any_cell_runs(
    work: Path, args: list[str], message: str
) -> None:
    (work / "folder").mkdir()
    defaults = dict(zip(ARTIFACTS[::2], ARTIFACTS[1::2], strict=True))
    defaults.update(dict(zip(args[::2], args[1::2], strict=True)))
    flat = [part for pair in defaults.items() for part in pair]
    result = run_cli(["pipe.md", *flat], cwd=work)
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(message), result.stderr
    assert result.stdout == "" and not (work / "last.ran").exists()


def test_a_release_log_that_breaks_mid_run_is_one_line_and_the_other_artifacts_are_written(work: Path) -> None:
    result = run_cli(["midrun.md", *ARTIFACTS], cwd=work)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    [line] = [ln for ln in result.stderr.splitlines() if "release record" in ln]
    assert "release.log" in line and "cannot append the release record" in line
    assert _statuses(work / "r.json") == {"break-log": "passed", "after": "passed"}
    ET.parse(work / "j.xml")
    assert "still running" in (work / "t.log").read_text()


def test_a_transcript_that_fails_mid_run_is_one_line_and_the_other_artifacts_are_written(work: Path) -> None:
    # /dev/full takes the open and fails every write (ENOSPC): a disk that fills up during the run.
    result = run_cli(["pipe.md", "--report", "r.json", "--junit", "j.xml", "--transcript", "/dev/full"], cwd=work)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    [line] = [ln for ln in result.stderr.splitlines() if "transcript incomplete" in ln]
    assert line == "runbook-exec: /dev/full: transcript incomplete: No space left on device"
    assert _statuses(work / "r.json") == {"many": "passed", "pause": "passed", "last": "passed"}
    assert [r.status for r in release_log.records(work / "release.log")] == ["passed"]


def test_resuming_a_resumed_run_keeps_its_cwd_and_exports(work: Path) -> None:
    first = run_cli(["resume-twice.md", *ARTIFACTS, "--no-release-log"], cwd=work)
    assert first.returncode == 1
    assert "stage=prepared dir=work" in first.stdout
    for _ in range(2):  # the gate still fails: each resume starts from the state the last one started with
        again = run_cli(["resume-twice.md", "--resume", *ARTIFACTS, "--no-release-log"], cwd=work)
        assert again.returncode == 1, again.stdout + again.stderr
        assert "stage=prepared dir=work" in again.stdout
    (work / "gate.ok").touch()
    last = run_cli(["resume-twice.md", "--resume", *ARTIFACTS, "--no-release-log"], cwd=work)
    assert last.returncode == 0, last.stdout + last.stderr
    assert "finished with prepared in work" in last.stdout
