"""A busy cell's output read through a relay process: the same bytes in the same order, cell by cell, whatever
ends the wait (frame, timeout, interrupt, the session's end, the runner's death)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from runbook_exec.run import relay, shell
from runbook_exec.run.shell import BashSession, ShellResult


@pytest.fixture
def started(monkeypatch: pytest.MonkeyPatch) -> list[relay.Relay]:
    """Every relay started, in order. Here a burst of 8 KiB (two full pty reads) already starts one, so any busy
    cell gets one."""
    made: list[relay.Relay] = []
    real = relay.start

    def start(master: int) -> relay.Relay | None:
        helper = real(master)
        if helper is not None:
            made.append(helper)
        return helper

    monkeypatch.setattr(relay, "start", start)
    monkeypatch.setattr(shell, "_BURST", 8192)
    monkeypatch.setattr(shell, "_RELAY_AFTER", 0)
    return made


@pytest.fixture(params=[True, False], ids=["relay", "direct"])
def session(request: pytest.FixtureRequest, tmp_path: Path, started: list[relay.Relay]) -> Iterator[BashSession]:
    session = BashSession(cwd=str(tmp_path), operator=False)
    session.RELAY = request.param
    try:
        yield session
    finally:
        session.close()
    assert all(helper._proc.poll() is not None for helper in started)  # none outlives its wait


def _run(session: BashSession, source: str, timeout: float = 30) -> tuple[ShellResult, bytes]:
    out: list[bytes] = []
    result = session.run(source, out.append, timeout=timeout)
    return result, b"".join(out)


def _seq(a: int, b: int) -> bytes:
    return b"".join(b"%d\n" % i for i in range(a, b + 1))


def test_a_busy_cell_passes_every_byte_in_order(session: BashSession, started: list[relay.Relay]) -> None:
    result, out = _run(session, "seq 1 400000; echo END")
    assert result.exit_code == 0
    assert out == _seq(1, 400000) + b"END\n"
    assert _run(session, "echo next")[1] == b"next\n"
    assert bool(started) == session.RELAY


def test_output_after_the_frame_belongs_to_the_next_cell(session: BashSession) -> None:
    first, out1 = _run(session, "{ sleep 0.5; seq 1 60000; echo BG; } & seq 1 300000")
    second, out2 = _run(session, "sleep 1.5; echo C2")
    assert first.exit_code == 0 and second.exit_code == 0
    assert out1 == _seq(1, 300000)
    assert out2 == _seq(1, 60000) + b"BG\nC2\n"


def test_a_busy_cell_that_times_out_leaves_a_working_session(session: BashSession) -> None:
    result, out = _run(session, "yes", timeout=1.5)
    assert result.timed_out
    assert set(out) <= {ord("y"), ord("\n")} and len(out) > 100_000
    assert _run(session, "echo after")[1].endswith(b"after\n")


def test_a_busy_cell_can_be_interrupted(session: BashSession) -> None:
    threading.Timer(1.0, session.interrupt).start()
    result, _ = _run(session, "yes")
    assert result.interrupted
    assert _run(session, "echo after")[1].endswith(b"after\n")


def test_a_busy_cell_that_ends_the_session_gets_a_new_one(session: BashSession) -> None:
    session.run("export KEPT=yes", lambda _data: None, timeout=10, snapshot=True)
    result, out = _run(session, "seq 1 200000; kill -9 $PPID; sleep 5")
    assert result.exit_code is None and result.restarted
    assert _seq(1, 1000) in out
    assert _run(session, 'echo "kept=$KEPT"')[1] == b"kept=yes\n"


def _relays_of(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == pid and b"poller.poll()" in cmdline:
            found.append(int(entry.name))
    return found


def test_the_relay_ends_with_a_runner_killed_with_sigkill(tmp_path: Path) -> None:
    from conftest import ROOT

    (tmp_path / "busy.md").write_text("# B\n\n```bash {#busy .exec}\nyes\n```\n")
    runner = subprocess.Popen(
        [sys.executable, "-m", "runbook_exec.cli", "busy.md", "--no-release-log"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
    )
    assert runner.stdout is not None
    relays: list[int] = []
    deadline = time.monotonic() + 20
    while not relays and time.monotonic() < deadline:
        assert runner.stdout.read1(1 << 16)
        relays = _relays_of(runner.pid)
    assert relays, "a cell printing `yes` got no relay"
    runner.send_signal(signal.SIGKILL)
    runner.wait()
    runner.stdout.close()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(_alive(pid) for pid in relays):
        time.sleep(0.05)
    assert not any(_alive(pid) for pid in relays)


def _alive(pid: int) -> bool:
    """Running (an exited process whose new parent does not reap it stays a zombie)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False
