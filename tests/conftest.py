"""Shared test helpers: run the real CLI, read fixture files."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures"
ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Completed:
    returncode: int
    stdout: str
    stderr: str
    seconds: float


def run_cli(args: Sequence[str], cwd: Path, env: dict[str, str] | None = None, timeout: float = 120) -> Completed:
    """Run ``runbook-exec`` as a subprocess (the real CLI, no TTY)."""
    import time

    full_env = dict(os.environ)
    full_env.pop("NO_COLOR", None)
    if env:
        full_env.update(env)
    t0 = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "runbook_exec.cli", *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        stdin=subprocess.DEVNULL,
        timeout=timeout,
        check=False,
    )
    return Completed(
        proc.returncode,
        proc.stdout.decode("utf-8", "replace"),
        proc.stderr.decode("utf-8", "replace"),
        time.monotonic() - t0,
    )


@pytest.fixture
def cli() -> object:
    return run_cli


def start_until(args: Sequence[str], cwd: Path, text: bytes) -> tuple[subprocess.Popen[bytes], bytes]:
    """Start the real CLI without a terminal and read its output until ``text`` shows (the cell is running)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "runbook_exec.cli", *args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
    )
    assert proc.stdout is not None
    seen = b""
    while text not in seen:
        chunk = proc.stdout.read1(4096)
        assert chunk, seen
        seen += chunk
    return proc, seen


def wait_exit(pid: int, seconds: float = 30) -> int:
    """The exit status of a child that is not waited for by anyone else (a pexpect child whose terminal was
    closed); killed and an AssertionError when it has not ended within ``seconds``."""
    import signal
    import time

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)
    raise AssertionError("the runner did not finish")
