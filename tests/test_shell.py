"""The bash session itself (real bash on a real pty): state across cells and across failures, idle ticks,
signals, terminal reads without an operator, scratch folders of dead runs."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from runbook_exec.run.shell import BashSession, ShellResult, remove_dead_scratch


@pytest.fixture
def session(tmp_path: Path) -> Iterator[BashSession]:
    shell = BashSession(cwd=str(tmp_path), operator=False)
    try:
        yield shell
    finally:
        shell.close()


def _run(shell: BashSession, source: str, **kwargs: object) -> tuple[ShellResult, str]:
    out: list[bytes] = []
    result = shell.run(source, out.append, timeout=kwargs.pop("timeout", 20), **kwargs)  # type: ignore[arg-type]
    return result, b"".join(out).decode()


STATE = """
cd sub
export EXPORTED=one
PLAIN=two
declare -a LIST=(a "b c")
declare -A MAP=([k]=v)
readonly FIXED=three
greet() { echo "hello from greet"; }
shopt -s expand_aliases
alias hi='echo hi from alias'
set -u
set -o noclobber
shopt -s nullglob extglob
trap 'echo "ERR trap"' ERR
umask 027
"""

CHECK = """
echo "pwd=${PWD##*/} exported=$EXPORTED plain=$PLAIN list=${LIST[1]} map=${MAP[k]} fixed=$FIXED"
greet
hi
echo "opts=$- nullglob=$(shopt -p nullglob) umask=$(umask)"
trap -p ERR
"""


def test_state_survives_a_failing_cell_and_the_failed_cell_leaves_none(session: BashSession, tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    assert _run(session, STATE, snapshot=True)[0].exit_code == 0
    failed, _ = _run(session, "cd /; export EXPORTED=changed; unset PLAIN; greet() { :; }; false; echo no")
    assert failed.exit_code == 1
    result, out = _run(session, CHECK)
    assert result.exit_code == 0, out
    assert "pwd=sub exported=one plain=two list=b c map=v fixed=three" in out
    assert "hello from greet" in out and "hi from alias" in out
    assert {"u", "C"} <= set(out.split("opts=")[1].split()[0])
    assert "nullglob=shopt -s nullglob" in out and "umask=0027" in out
    assert "trap -- 'echo \"ERR trap\"' ERR" in out
    assert result.cwd == str(tmp_path / "sub")


def test_exports_and_cwd_follow_snapshots(session: BashSession, tmp_path: Path) -> None:
    _run(session, "export RESUMED=yes; cd /", snapshot=True)
    assert 'declare -x RESUMED="yes"' in session.exports
    assert session.cwd == "/"
    _run(session, "exit 3")
    assert 'declare -x RESUMED="yes"' in session.exports and session.cwd == "/"


def test_restore_sets_cwd_and_exports(tmp_path: Path) -> None:
    shell = BashSession(cwd="/", operator=False)
    try:
        shell.restore(str(tmp_path), 'declare -x CARRIED="over there"\n')
        _, out = _run(shell, 'echo "$PWD|$CARRIED"')
        assert out.strip() == f"{tmp_path}|over there"
        assert shell.cwd == str(tmp_path)
    finally:
        shell.close()


def test_each_cell_starts_with_errexit_and_its_own_stdout(session: BashSession) -> None:
    assert _run(session, "set +eu; set +o pipefail; exec >/dev/null 2>&1; echo hidden")[1] == ""
    result, out = _run(session, "echo visible; false | true; echo not reached")
    assert result.exit_code == 1 and out == "visible\n"


def test_exit_trap_runs_at_the_end_of_its_cell_only(session: BashSession) -> None:
    assert _run(session, "trap 'echo cleanup' EXIT; echo body")[1] == "body\ncleanup\n"
    assert _run(session, "echo next")[1] == "next\n"


def test_background_job_of_an_earlier_cell_survives_failures_and_timeouts(session: BashSession) -> None:
    _, out = _run(session, "sleep 300 & echo $!")
    job = int(out.strip())
    try:
        assert _run(session, "false")[0].exit_code == 1
        assert _run(session, "sleep 30", timeout=1)[0].timed_out
        assert _run(session, f"kill -0 {job} && echo alive")[1] == "alive\n"
    finally:
        os.kill(job, 9)


def test_timeout_stops_the_cell_and_its_children(session: BashSession) -> None:
    t0 = time.monotonic()
    result, _ = _run(session, "trap '' INT; sleep 31.5 & sleep 31.5; echo never", timeout=1)
    assert result.timed_out and result.exit_code is None
    assert time.monotonic() - t0 < 8
    left = subprocess.run(["pgrep", "-f", "sleep 31.5"], capture_output=True, check=False).stdout
    assert not left


def test_idle_cell_gets_idle_ticks(session: BashSession) -> None:
    out: list[bytes] = []
    session.run("sleep 1.2", out.append, timeout=10)
    assert out.count(b"") >= 3


def test_sigpipe_has_its_default_disposition() -> None:
    shell = BashSession(operator=False)
    try:
        # Python ignores SIGPIPE; a cell's programs must not inherit that (bit 13 of SigIgn).
        _, out = _run(shell, 'grep SigIgn /proc/self/status; yes | head -n 1 || echo "${PIPESTATUS[0]}"')
    finally:
        shell.close()
    ignored = int(out.split()[1], 16)
    assert not ignored & (1 << 12), out
    assert out.split()[2:] == ["y", "141"], out


def test_a_cell_reading_the_terminal_without_an_operator_fails_fast(session: BashSession) -> None:
    t0 = time.monotonic()
    result, _ = _run(session, "echo asking; read -r answer </dev/tty; echo never", timeout=60)
    assert result.waits_for_input and result.exit_code is None
    assert time.monotonic() - t0 < 10
    assert _run(session, "echo next")[1] == "next\n"


def test_stdin_tty_cell_reads_the_terminal(session: BashSession) -> None:
    t0 = time.monotonic()
    result, _ = _run(session, "read -r answer; echo never", timeout=60, stdin_tty=True)
    assert result.waits_for_input
    assert time.monotonic() - t0 < 10
    # Without stdin_tty the same cell reads /dev/null: end of input at once.
    assert _run(session, "read -r answer || echo eof")[1] == "eof\n"


@pytest.mark.parametrize(
    "cell",
    ["exec bash", "exec 239>&- 1>&-", "continue", "break", "exec sleep 0.2", "kill -9 $$"],
)
def test_a_cell_that_takes_over_the_shell_never_hangs_the_session(session: BashSession, cell: str) -> None:
    _run(session, "export KEPT=yes", snapshot=True)
    t0 = time.monotonic()
    _run(session, cell, timeout=60)
    assert time.monotonic() - t0 < 10
    assert _run(session, 'echo "kept=$KEPT"')[1] == "kept=yes\n"


def test_scratch_folders_of_dead_runners_are_removed(tmp_path: Path) -> None:
    dead = subprocess.Popen(["true"])
    dead.wait()
    gone = tmp_path / f"runbook-exec-{dead.pid}-abc123"
    alive = tmp_path / f"runbook-exec-{os.getpid()}-def456"
    other = tmp_path / "runbook-exec-unrelated"
    for folder in (gone, alive, other):
        folder.mkdir()
    assert remove_dead_scratch(str(tmp_path)) == [str(gone)]
    assert not gone.exists() and alive.exists() and other.exists()


@pytest.mark.skipif(not os.path.isdir("/dev/shm"), reason="cell folders live on /dev/shm only where it exists")
def test_the_next_run_removes_the_scratch_folder_of_a_runner_killed_with_sigkill(tmp_path: Path) -> None:
    from conftest import ROOT, run_cli

    (tmp_path / "slow.md").write_text("# S\n\n```bash {#slow .exec}\necho started\nsleep 30\n```\n")
    (tmp_path / "quick.md").write_text("# Q\n\n```bash {#quick .exec}\necho quick\n```\n")
    runner = subprocess.Popen(
        [sys.executable, "-m", "runbook_exec.cli", "slow.md", "--no-release-log"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
    )
    assert runner.stdout is not None
    seen = b""
    while b"started" not in seen:
        chunk = runner.stdout.read1(4096)
        assert chunk, seen
        seen += chunk
    folders = list(Path("/dev/shm").glob(f"runbook-exec-{runner.pid}-*"))
    assert len(folders) == 1
    runner.kill()
    runner.wait()
    assert folders[0].exists()
    assert run_cli(["quick.md", "--no-release-log"], cwd=tmp_path).returncode == 0
    assert not folders[0].exists()


def test_a_background_job_reading_the_terminal_does_not_fail_later_cells(session: BashSession) -> None:
    # (Start times have the kernel's 10 ms resolution: a job started in the same tick as the next cell counts
    # as that cell's.)
    _run(session, "(read -r x </dev/tty) & sleep 0.05")
    result, out = _run(session, "sleep 3; echo slept", timeout=20)
    assert result.exit_code == 0 and out == "slept\n", result


@pytest.mark.parametrize("pidfd", [True, False], ids=["pidfd", "no-pidfd"])
def test_a_cell_that_kills_the_session_leader_gets_a_new_session(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pidfd: bool
) -> None:
    if not pidfd:

        def unsupported(_pid: int) -> int:
            raise OSError("pidfd_open")

        monkeypatch.setattr(os, "pidfd_open", unsupported)
    shell = BashSession(cwd=str(tmp_path), operator=False)
    try:
        _run(shell, "export KEPT=yes; cd /", snapshot=True)
        t0 = time.monotonic()
        result, _ = _run(shell, "kill -9 $PPID; sleep 5", timeout=30)
        assert time.monotonic() - t0 < 8
        assert result.exit_code is None and result.restarted and result.note
        assert _run(shell, 'echo "kept=$KEPT $PWD"')[1] == "kept=yes /\n"
    finally:
        shell.close()


def test_posix_mode_functrace_and_a_return_trap_come_back_after_a_failure(session: BashSession) -> None:
    _run(session, "set -o posix; set -T; trap 'echo RETURN trap' RETURN; shopt -s extglob", snapshot=True)
    assert _run(session, "trap 'echo bye' EXIT; echo body")[1] == "body\nbye\n"
    assert _run(session, "false")[0].exit_code == 1
    _, out = _run(session, 'f() { :; }; f; echo "$SHELLOPTS"; shopt -p extglob')
    assert out.startswith("RETURN trap\n"), out
    assert "posix" in out and "functrace" in out and "shopt -s extglob" in out


def test_text_of_a_cell_sent_to_a_bash_that_just_ended_is_never_run_as_commands(
    session: BashSession, tmp_path: Path
) -> None:
    # Cell text travels on the command pipe. When bash has just ended (here: killed between two cells), the
    # session leader reads that pipe: blank lines and commands in the text must neither start a bash nor be
    # run outside the command loop.
    bait = 'echo first\n\n[ -n "${__rx_n:-}" ] || touch outside-the-loop\n\n'
    for _ in range(10):
        _run(session, "echo ready")
        found = subprocess.run(["pgrep", "-P", str(session.pid)], capture_output=True, text=True, check=False)
        for pid in found.stdout.split():
            os.kill(int(pid), 9)
        session.wait(session.start(bait), lambda _data: None, timeout=20)
        result, after = _run(session, "echo after")
        assert result.exit_code == 0 and after.strip().endswith("after")
    assert not (tmp_path / "outside-the-loop").exists()
