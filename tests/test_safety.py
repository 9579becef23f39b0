"""Operator safety through the real CLI: confirmations, signals, the run lock and --resume.

pexpect drives the runner itself on a pty where a terminal matters.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pexpect
import pytest

from conftest import FIXTURES, ROOT, run_cli, start_until

SAFETY = FIXTURES / "safety"


@pytest.fixture
def work(tmp_path: Path) -> Path:
    folder = tmp_path / "safety"
    shutil.copytree(SAFETY, folder)
    return folder


def _spawn(args: list[str], cwd: Path) -> pexpect.spawn:
    env = dict(os.environ, NO_COLOR="1", PYTHONPATH=str(ROOT))
    return pexpect.spawn(
        sys.executable,
        ["-m", "runbook_exec.cli", *args],
        cwd=str(cwd),
        env=env,
        timeout=30,
        encoding="utf-8",
        dimensions=(40, 200),
    )


def _report(work: Path) -> dict[str, object]:
    return json.loads((work / "r.json").read_text())


def _statuses(work: Path) -> dict[str, str]:
    """Each cell's status, or its reason when it has one (refused, interrupted)."""
    cells = _report(work)["cells"]
    assert isinstance(cells, list)
    return {c["id"]: c["reason"] or c["status"] for c in cells}


ARTIFACTS = ["--report", "r.json", "--junit", "j.xml", "--transcript", "t.log", "--no-release-log"]


def test_danger_refused_without_tty(work: Path) -> None:
    result = run_cli(["danger.md", *ARTIFACTS], cwd=work)
    assert result.returncode == 2
    assert "down (line 7)" in result.stderr and "--yes" in result.stderr
    assert "before" not in result.stdout


def test_danger_runs_with_yes(work: Path) -> None:
    result = run_cli(["danger.md", "--yes", *ARTIFACTS], cwd=work)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "danger ran" in result.stdout


def test_danger_asks_on_a_tty_and_no_is_a_refusal(work: Path) -> None:
    child = _spawn(["danger.md", *ARTIFACTS], work)
    child.expect_exact("Run it? [y/N]")
    assert 'echo "danger ran"' in child.before
    child.sendline("n")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 1
    assert _statuses(work) == {"before": "passed", "down": "refused"}


def test_danger_asks_on_a_tty_and_yes_runs(work: Path) -> None:
    child = _spawn(["danger.md", *ARTIFACTS], work)
    child.expect_exact("Run it? [y/N]")
    child.sendline("y")
    child.expect_exact("danger ran")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0


def test_step_asks_before_every_cell(work: Path) -> None:
    child = _spawn(["danger.md", "--step", "--yes", *ARTIFACTS], work)
    child.expect_exact("[y]es / [s]kip / [q]uit")
    child.sendline("s")
    child.expect_exact("Run it? [y/N]")
    child.sendline("y")
    child.expect(pexpect.EOF)
    child.close()
    assert _statuses(work) == {"before": "skipped", "down": "passed"}


def test_sigint_stops_the_cell_runs_failure_cells_and_exits_130(work: Path) -> None:
    child = _spawn(["interrupt.md", *ARTIFACTS], work)
    child.expect_exact("long cell started")
    t0 = time.monotonic()
    child.sendintr()
    child.expect(pexpect.EOF)
    child.close()
    assert time.monotonic() - t0 < 10
    assert child.exitstatus == 130
    out = child.before
    assert "collected after interrupt" in out and "always ran" in out
    assert "never runs" not in out and "not reached" not in out
    assert _statuses(work) == {
        "prepare": "passed",
        "long": "interrupted",
        "next": "skipped",
        "collect": "passed",
        "always": "passed",
    }
    report = _report(work)
    assert report["status"] == "failed" and report["interrupted"] is True
    assert next(c for c in report["cells"] if c["id"] == "long")["status"] == "failed"


def test_second_sigint_skips_failure_cells(work: Path) -> None:
    (work / "slow-collect.md").write_text(
        "# S\n\n```bash {#long .exec}\necho started\nsleep 60\n```\n\n"
        "```bash {#collect .exec when=failure}\necho collecting\nsleep 60\necho collected\n```\n"
    )
    child = _spawn(["slow-collect.md", *ARTIFACTS], work)
    child.expect_exact("started")
    child.sendintr()
    child.expect_exact("collecting")
    child.sendintr()
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 130
    assert "collected" not in child.before.replace("collecting", "")


def test_sigterm_exits_143(work: Path) -> None:
    proc, seen = start_until(["interrupt.md", *ARTIFACTS], work, b"long cell started")
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=20)
    assert proc.returncode == 143
    assert b"collected after interrupt" in seen + out


def test_second_run_is_refused_while_the_first_holds_the_lock(work: Path) -> None:
    first, _ = start_until(["lock.md", "--no-release-log"], work, b"holding")
    try:
        second = run_cli(["lock.md", "--no-release-log"], cwd=work)
        assert second.returncode == 2
        assert "another run of this runbook is in progress" in second.stderr
        assert f"pid {first.pid}" in second.stderr and socket.gethostname() in second.stderr
    finally:
        first.kill()
        first.wait()


def test_stale_lock_is_taken_over_with_a_warning(work: Path) -> None:
    from runbook_exec.run.lock import lock_path

    dead = subprocess.Popen(["true"])
    dead.wait()
    os.chdir(work)
    try:
        path = lock_path("danger.md")
    finally:
        os.chdir(ROOT)
    path_abs = work / path
    path_abs.parent.mkdir(parents=True)
    path_abs.write_text(json.dumps({"pid": dead.pid, "user": "x", "host": socket.gethostname(), "since": "then"}))
    result = run_cli(["danger.md", "--yes", *ARTIFACTS], cwd=work)
    assert result.returncode == 0
    assert f"taking over a stale lock of pid {dead.pid}" in result.stderr


def test_resume_continues_at_the_failed_cell_with_cwd_and_exports(work: Path) -> None:
    first = run_cli(["resume.md", *ARTIFACTS], cwd=work)
    assert first.returncode == 1
    assert _statuses(work) == {"setup": "passed", "gate": "failed", "finish": "skipped"}
    (work / "gate.ok").write_text("")
    second = run_cli(["resume.md", "--resume", *ARTIFACTS], cwd=work)
    assert second.returncode == 0, second.stdout + second.stderr
    assert "stage=prepared dir=work" in second.stdout
    assert "finished with prepared in work" in second.stdout
    assert _statuses(work) == {"gate": "passed", "finish": "passed"}
    third = run_cli(["resume.md", "--resume", *ARTIFACTS], cwd=work)
    assert third.returncode == 2 and "nothing to resume" in third.stderr


def test_resume_with_nothing_to_resume(work: Path) -> None:
    result = run_cli(["resume.md", "--resume"], cwd=work)
    assert result.returncode == 2
    assert result.stderr.strip().startswith("resume.md: nothing to resume")


_APPENDER = """
import sys
from runbook_exec.records import release_log
log, writer = sys.argv[1], sys.argv[2]
i = 0
while True:
    rid = "w%s-%06d" % (writer, i)
    body = ("%s " % rid) * 2000 + "\\n"
    meta = '{"status": "passed", "vars": {"TAG": "%s"}}' % rid
    text = "=== runbook-exec record %s begin ===\\nmeta: %s\\n%s" % (rid, meta, body)
    text += "=== runbook-exec record %s end sha256=%s ===\\n" % (rid, "0" * 64)
    release_log.append(log, release_log.seal(text))
    i += 1
"""


def test_kill_9_during_20_parallel_appends_leaves_no_torn_record(tmp_path: Path) -> None:
    from runbook_exec.records import release_log

    log = tmp_path / "release.log"
    first = release_log.seal(
        '=== runbook-exec record first begin ===\nmeta: {"status": "passed", "vars": {"TAG": "2026.01.01"}}\n'
        "first body\n=== runbook-exec record first end sha256=" + "0" * 64 + " ===\n"
    )
    release_log.append(log, first)
    before = log.read_bytes()
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    writers = [subprocess.Popen([sys.executable, "-c", _APPENDER, str(log), str(n)], env=env) for n in range(20)]
    deadline = time.monotonic() + 30
    while log.stat().st_size < len(before) + 2_000_000 and time.monotonic() < deadline:
        time.sleep(0.05)
    for proc in writers:
        proc.send_signal(signal.SIGKILL)
    for proc in writers:
        proc.wait(timeout=30)
    data = log.read_bytes()
    assert data.startswith(before)
    found = release_log.records(log)
    begins = data.count(b" begin ===\n")
    assert found[0].run_id == "first"
    assert len(found) > 20
    assert begins - len(found) <= 20  # at most the one record each killed writer was writing
    for record in found[1:]:
        assert record.body.split(" ", 1)[0] == record.run_id, record.run_id
        assert record.variables["TAG"] == record.run_id


def test_ctrl_c_at_a_danger_prompt_runs_nothing_more(work: Path) -> None:
    child = _spawn(["danger.md", *ARTIFACTS], work)
    child.expect_exact("Run it? [y/N]")
    child.sendintr()
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 130
    assert "danger ran" not in child.before
    assert _statuses(work) == {"before": "passed", "down": "refused"}


def test_resume_restores_a_secret_derived_export_in_clear_from_a_private_state_file(work: Path) -> None:
    password = "pw-" + os.urandom(12).hex()
    (work / "db.env").write_text(f"DB_PASSWORD={password}\n")
    args = ["resume-derived.md", "--env-file", "db.env", *ARTIFACTS]
    first = run_cli(args, cwd=work)
    assert first.returncode == 1
    [state] = (work / ".runbook" / "state").glob("*.jsonl")
    # The one file that holds values in clear: private, and left out of the final rescan.
    assert state.stat().st_mode & 0o777 == 0o600
    assert password in state.read_text() and "PLAIN" in state.read_text()
    (work / "gate.ok").write_text("")
    second = run_cli([*args, "--resume"], cwd=work)
    assert second.returncode == 0, second.stdout + second.stderr
    assert "plain=kept dsn=postgres://app:***@db/app" in second.stdout
    assert "dsn-restored=yes" in second.stdout
    for text in (
        first.stdout,
        first.stderr,
        second.stdout,
        second.stderr,
        *((work / name).read_text() for name in ("r.json", "j.xml", "t.log")),
    ):
        assert password not in text
    assert not state.exists()  # the run passed: nothing to resume, no secret left behind


def test_kill_9_of_the_runner_leaves_no_cell_process_behind(work: Path) -> None:
    marker = f"{300 + os.getpid() % 97}.{os.getpid()}"
    (work / "orphan.md").write_text(
        f"# O\n\n```bash {{#fg .exec}}\n(sleep {marker}) &\necho started\nsleep {marker}\n```\n"
    )
    proc, _ = start_until(["orphan.md", "--no-release-log"], work, b"started")
    proc.kill()
    proc.wait()
    deadline = time.monotonic() + 10
    left = b""
    while time.monotonic() < deadline:
        left = subprocess.run(["pgrep", "-f", f"sleep {marker}"], capture_output=True, check=False).stdout
        if not left:
            break
        time.sleep(0.1)
    assert not left, f"cell processes survived the runner: {left!r}"
