"""One run per runbook, working directory and target at a time.

An exclusive ``flock`` on a file under ``.runbook/locks/`` that also names its holder (pid, user, host,
since). The kernel drops the lock when its holder dies, even by ``kill -9``; a lock file whose named
holder is gone is then taken over with a warning.
"""

from __future__ import annotations

import contextlib
import fcntl
import getpass
import hashlib
import json
import os
import socket
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from runbook_exec.errors import RunbookError

LOCK_DIR = Path(".runbook/locks")


def lock_path(runbook: str, cwd: str | None = None, target: str | None = None) -> Path:
    key = f"{Path(runbook).resolve()}\0{Path(cwd or os.getcwd()).resolve()}"
    if target is None:
        return LOCK_DIR / f"{Path(runbook).stem}-{hashlib.sha256(key.encode()).hexdigest()[:16]}.lock"
    # Runs against different targets do not exclude each other; two runs against one target do.
    key += f"\0target:{target}"
    return LOCK_DIR / f"{Path(runbook).stem}-{target}-{hashlib.sha256(key.encode()).hexdigest()[:16]}.lock"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def hold(runbook: str, warn: object = None, target: str | None = None) -> Iterator[Path]:
    """Hold the run lock for ``runbook`` (and ``target``) in the current directory, or raise
    :class:`RunbookError`."""
    path = lock_path(runbook, target=target)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read(fd)
            who = (
                f"pid {holder.get('pid')}, user {holder.get('user')}, host {holder.get('host')}, "
                f"since {holder.get('since')}"
                if holder
                else "another process"
            )
            against = f" against target {target}" if target is not None else ""
            raise RunbookError(f"{runbook}: another run of this runbook{against} is in progress here ({who})") from None
        previous = _read(fd)
        if previous.get("pid") and previous.get("host") == socket.gethostname() and not _alive(int(previous["pid"])):
            message = f"warning: taking over a stale lock of pid {previous['pid']} (since {previous.get('since')})"
            if callable(warn):
                warn(message)
        info = {
            "pid": os.getpid(),
            "user": _user(),
            "host": socket.gethostname(),
            "since": datetime.now(UTC).isoformat(timespec="seconds"),
            "runbook": str(Path(runbook).resolve()),
            **({"target": target} if target is not None else {}),
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(info).encode(), 0)
        try:
            yield path
        finally:
            os.ftruncate(fd, 0)
    finally:
        os.close(fd)


def _read(fd: int) -> dict[str, str]:
    try:
        data = os.pread(fd, 4096, 0)
        value = json.loads(data) if data.strip() else {}
        return value if isinstance(value, dict) else {}
    except (OSError, ValueError):
        return {}


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"
