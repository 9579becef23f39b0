"""One persistent bash session on a pty, driven by pexpect, that runs cells one at a time.

How a cell runs, and why:

* the cell body is written to a private file and ``source``d with stdin from ``/dev/null`` (no tty line
  limit, no SIGINT from 0x03 bytes, no send deadlock, ``read`` gets EOF);
* an ``ERR`` trap that ``return``s gives errexit semantics inside the cell without killing the session;
  ``set -o pipefail`` is on; ``exit`` is a function that records its status and unwinds instead of ending
  the session (inside subshells it is the real builtin);
* the exit status comes from ``PROMPT_COMMAND``, framed by control bytes around a fresh per-cell nonce, so
  no output of the cell can look like it; it also fires after a SIGINT abort;
* timeouts and interrupts signal the pty's foreground process group like Ctrl-C would, escalate to SIGKILL,
  and restart the session (restoring cwd) if bash itself stops answering.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import select
import shlex
import shutil
import signal
import subprocess
import tempfile
import termios
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import pexpect

OutputSink = Callable[[bytes], None]

_INIT = r"""
set +o history; HISTFILE=; unset HISTFILE
PS1=''; PS2=''; PS4='+ '
set -E -o pipefail
# Every cell's stdin: a dup of this descriptor is cheaper than opening /dev/null for each cell. bash picks
# the number (10 or above), so it does not collide with descriptors a cell opens itself (exec 9>lock).
exec {__rx_null}</dev/null
__rx_exit=
__rx_back=
__rx_snap=
exit() {
  if (( BASH_SUBSHELL > 0 )); then builtin exit "$@"; fi
  __rx_exit=${1-$?}
  return 1
}
# Unwind only inside the cell (a sourced file or a function), never at the session's top level.
__rx_trap='__rx_rc=$?; set +e; if [[ -n ${BASH_SOURCE[0]+s}${FUNCNAME[0]+f} ]]; then return "$__rx_rc"; fi'
trap "$__rx_trap" ERR
# After a cell: restore what the runner owns. Only a cell that may have changed shell state (the runner
# asks for a snapshot then), used `exit` or ran with cwd= takes this path; plain cells skip it.
__rx_after() {
  if [[ -n ${__rx_exit-} ]]; then __rx_st=$__rx_exit; __rx_exit=; fi
  if [[ -n ${__rx_back-} ]]; then builtin cd -- "$__rx_back" 2>/dev/null || :; __rx_back=; fi
  trap "$__rx_trap" ERR
  set -E -o pipefail
  if [[ -n ${__rx_snap-} ]]; then export -p >"$__rx_snap" 2>/dev/null || :; __rx_snap=; fi
}
__rx_xon() { if [[ $__rx_x == *x* ]]; then set -x; fi; }
# xtrace stays off between cells (so the runner's own commands never show in a trace) and is resumed
# by the first line of the next cell. Closing fd 2 hides the trace of `set +x` itself, cheaper than /dev/null.
PROMPT_COMMAND='{ __rx_st=$?; __rx_x=$-; set +x; } 2>&-; [[ -z ${__rx_exit-}${__rx_back-}${__rx_snap-} ]] || __rx_after'
PROMPT_COMMAND+='; builtin printf "\036%s:%s:%s\037" "${__rx_nonce-}" "$__rx_st" "$PWD"'
readonly PROMPT_COMMAND
"""


# Runs detached; $1 is bash's session id. `read` returns at end of file (runner closed or died).
_WATCHDOG = (
    'read -r _ignored || :; pkill -HUP -s "$1" 2>/dev/null || kill -HUP -- "-$1" 2>/dev/null; '
    'sleep 2; pkill -KILL -s "$1" 2>/dev/null || kill -KILL -- "-$1" 2>/dev/null; exit 0'
)


@dataclass(frozen=True)
class ShellResult:
    """How one cell ended."""

    exit_code: int | None  # None when the cell was stopped before it reported a status
    timed_out: bool = False
    interrupted: bool = False
    restarted: bool = False  # the session had to be restarted (state other than cwd and env was lost)
    cwd: str = ""
    duration_s: float = 0.0


@dataclass(frozen=True)
class Started:
    """A cell sent to the session whose status has not been read yet."""

    nonce: str
    at: float
    snapshot: bool = False


class Shell(Protocol):
    """What the executor needs from a shell. Tests of executor logic use a fake."""

    def run(
        self,
        source: str,
        output: OutputSink,
        *,
        timeout: float | None = None,
        cwd: str | None = None,
        name: str = "cell",
        snapshot: bool = False,
        next_cell: tuple[str, str] | None = None,
        stdin_tty: bool = False,
    ) -> ShellResult: ...

    def start(
        self,
        source: str,
        *,
        cwd: str | None = None,
        name: str = "cell",
        snapshot: bool = False,
        next_cell: tuple[str, str] | None = None,
        stdin_tty: bool = False,
    ) -> Started: ...

    def wait(self, started: Started, output: OutputSink, *, timeout: float | None = None) -> ShellResult: ...

    @property
    def exports(self) -> str:
        """``export -p`` as of the last cell run with ``snapshot=True``."""
        ...

    @property
    def cwd(self) -> str:
        """The session's working directory after the last cell."""
        ...

    def interrupt(self) -> None: ...

    def close(self) -> None: ...


class ShellError(RuntimeError):
    """The session could not be started or died in a way that cannot be recovered."""


class BashSession:
    """A persistent interactive bash on a pty."""

    GRACE_S = 1.5

    def __init__(
        self,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
        columns: int = 200,
        rows: int = 50,
        bash: str = "bash",
    ) -> None:
        self._env = dict(os.environ if env is None else env)
        self._env.setdefault("TERM", "dumb")
        self._cwd = str(Path(cwd or os.getcwd()).resolve())
        self._dims = (rows, columns)
        self._bash = shutil.which(bash, path=self._env.get("PATH")) or bash
        self._dir = tempfile.mkdtemp(prefix="runbook-exec-", dir=_scratch_root())
        self._counter = 0
        self._snap_file = f"{self._dir}/exports"
        self._prepared: tuple[tuple[str, str], str] | None = None
        self._exports = ""
        self._interrupt_requested = False
        self._watch_fd: int | None = None
        self._child: pexpect.spawn | None = None
        self._start()

    # -- lifecycle -------------------------------------------------------------------------------------

    def _start(self) -> None:
        def no_onlcr() -> None:
            attrs = termios.tcgetattr(0)
            attrs[1] &= ~termios.ONLCR
            termios.tcsetattr(0, termios.TCSANOW, attrs)

        init = Path(self._dir, "init.sh")
        init.write_text(_INIT)
        try:
            child = pexpect.spawn(
                self._bash,
                ["--noprofile", "--norc", "--noediting", "-i"],
                env=self._env,
                cwd=self._cwd,
                echo=False,
                dimensions=self._dims,
                preexec_fn=no_onlcr,
            )
        except pexpect.ExceptionPexpect as exc:
            raise ShellError(f"cannot start bash: {exc}") from None
        child.delaybeforesend = None
        self._watch(int(child.pid))
        # pexpect sleeps 0.1 s twice when closing; the session is killed by process group instead.
        child.delayafterclose = 0
        child.delayafterterminate = 0
        child.ptyproc.delayafterclose = 0
        child.ptyproc.delayafterterminate = 0
        self._child = child
        nonce = secrets.token_hex(8)
        self._send(f"__rx_x=; __rx_nonce={nonce}; source {shlex.quote(str(init))}\n")
        code, _ = self._wait(nonce, lambda _b: None, time.monotonic() + 10)
        if code is None:
            self._kill()
            raise ShellError("bash did not start in 10 s")

    @property
    def exports(self) -> str:
        """``export -p`` as of the last cell run with ``snapshot=True`` (empty before)."""
        return self._exports

    @property
    def cwd(self) -> str:
        """The session's working directory after the last cell."""
        return self._cwd

    def restore(self, cwd: str, exports: str) -> None:
        """Put a fresh session back where an earlier one was: working directory and exported variables."""
        script = f"builtin cd -- {shlex.quote(cwd)}\n{exports}"
        # With a snapshot, what was restored is also what a later --resume or restart starts from.
        result = self.run(script, lambda _data: None, timeout=10, name="restore", snapshot=True)
        for written in Path(self._dir).glob("*-restore"):
            # It holds exported values (after a restart, secrets too): not left on disk.
            with contextlib.suppress(OSError):
                written.unlink()
        if result.exit_code != 0:
            raise ShellError(f"could not restore the session state (cwd {cwd})")

    @property
    def pid(self) -> int:
        assert self._child is not None
        return int(self._child.pid)

    def close(self) -> None:
        """End the session and remove its private files."""
        self._kill()
        shutil.rmtree(self._dir, ignore_errors=True)

    def _kill(self) -> None:
        child, self._child = self._child, None
        if child is None:
            return
        with contextlib.suppress(OSError):
            os.killpg(child.pid, signal.SIGHUP)
        with contextlib.suppress(Exception):
            child.close(force=True)
        self._release_watchdog()

    def _watch(self, session: int) -> None:
        """Start a watchdog that ends every process of bash's session once this runner is gone.

        bash does not pass a hangup on to background jobs while it is sourcing a file (the cell), so a
        runner killed with SIGKILL would leave a cell's processes running. The watchdog blocks reading a
        pipe whose only writer is this process: end of file, from a normal close or from the kernel
        closing a dead runner's descriptors, makes it signal the whole session (HUP, then KILL).
        """
        read_end, self._watch_fd = os.pipe()
        try:
            subprocess.Popen(
                ["/bin/sh", "-c", _WATCHDOG, "runbook-exec-watchdog", str(session)],
                stdin=read_end,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,  # the operator's Ctrl-C is for the runner, not for this
                close_fds=True,
            )
        except OSError:
            os.close(self._watch_fd)
            self._watch_fd = None
        finally:
            os.close(read_end)

    def _release_watchdog(self) -> None:
        if self._watch_fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._watch_fd)
            self._watch_fd = None

    def _restart(self, cwd: str) -> None:
        self._kill()
        if Path(cwd).is_dir():
            self._cwd = cwd
        self._start()
        if self._exports:
            # Best effort: exported variables as of the last snapshot come back too.
            script = self._exports
            self._exports = ""
            with contextlib.suppress(ShellError):
                self.restore(self._cwd, script)
            self._exports = script

    # -- running cells ---------------------------------------------------------------------------------

    def interrupt(self) -> None:
        """Ask the running cell to stop, as Ctrl-C would (safe to call from a signal handler)."""
        self._interrupt_requested = True

    def run(
        self,
        source: str,
        output: OutputSink,
        *,
        timeout: float | None = None,
        cwd: str | None = None,
        name: str = "cell",
        snapshot: bool = False,
        next_cell: tuple[str, str] | None = None,
        stdin_tty: bool = False,
    ) -> ShellResult:
        """Run one cell; stream its raw output to ``output``; return how it ended."""
        started = self.start(source, cwd=cwd, name=name, snapshot=snapshot, next_cell=next_cell, stdin_tty=stdin_tty)
        return self.wait(started, output, timeout=timeout)

    def start(
        self,
        source: str,
        *,
        cwd: str | None = None,
        name: str = "cell",
        snapshot: bool = False,
        next_cell: tuple[str, str] | None = None,
        stdin_tty: bool = False,
    ) -> Started:
        """Send one cell to bash and return at once; :meth:`wait` reads its output and status.

        ``stdin_tty``: the cell reads the terminal (an interactive cell with an operator present) instead of
        ``/dev/null``.

        Until :meth:`wait`, the cell's output stays in the pty, so the caller can still write its own
        lines first. ``next_cell`` (source, name) is written to its file while bash runs this one, so the
        next call finds it ready (the two cores overlap instead of taking turns).
        """
        if self._child is None or not self._child.isalive():
            self._restart(self._cwd)
        at = time.monotonic()
        prepared, self._prepared = self._prepared, None
        cell = prepared[1] if prepared is not None and prepared[0] == (source, name) else self._write(source, name)
        nonce = secrets.token_hex(8)
        line = f"__rx_nonce={nonce}; "
        if snapshot:
            line += f"__rx_snap={shlex.quote(self._snap_file)}; "
        if cwd:
            line += f"__rx_back=$PWD; builtin cd -- {shlex.quote(cwd)} && "
        line += f"source {shlex.quote(cell)} " + ("</dev/tty\n" if stdin_tty else "<&$__rx_null\n")
        self._interrupt_requested = False
        self._send(line)
        if next_cell is not None:
            self._prepared = (next_cell, self._write(*next_cell))
        return Started(nonce=nonce, at=at, snapshot=snapshot)

    def wait(self, started: Started, output: OutputSink, *, timeout: float | None = None) -> ShellResult:
        """Stream a started cell's raw output to ``output`` until its status arrives (or its deadline)."""
        deadline = started.at + timeout if timeout else None
        code, cwd_after = self._wait(started.nonce, output, deadline)
        timed_out = interrupted = restarted = False
        if code is None:
            timed_out = not self._interrupt_requested
            interrupted = self._interrupt_requested
            code, cwd_after, restarted = self._stop(started.nonce, output)
        if cwd_after:
            self._cwd = cwd_after
        if started.snapshot and not restarted:
            with contextlib.suppress(OSError), open(self._snap_file, encoding="utf-8", errors="surrogateescape") as fh:
                self._exports = fh.read()
            # It holds every exported value, secrets included: keep it on disk no longer than needed.
            with contextlib.suppress(OSError):
                os.unlink(self._snap_file)
        return ShellResult(
            exit_code=None if (timed_out or interrupted) else code,
            timed_out=timed_out,
            interrupted=interrupted,
            restarted=restarted,
            cwd=self._cwd,
            duration_s=time.monotonic() - started.at,
        )

    def _write(self, source: str, name: str) -> str:
        """Write a cell body to a fresh file in the session's private directory; return its path."""
        self._counter += 1
        path = f"{self._dir}/{_file_name(name, self._counter)}"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            # xtrace (if the cell turned it on) resumes only inside the cell, so the runner's own
            # commands never show up in a trace.
            os.write(fd, ("__rx_xon; " + source + ("" if source.endswith("\n") else "\n")).encode())
        finally:
            os.close(fd)
        return path

    def _send(self, text: str) -> None:
        assert self._child is not None
        data = text.encode()
        fd = self._child.child_fd
        while data:
            written = os.write(fd, data)
            data = data[written:]

    def _wait(self, nonce: str, output: OutputSink, deadline: float | None) -> tuple[int | None, str | None]:
        """Read until this cell's status frame; ``(None, None)`` on deadline, interrupt or EOF."""
        assert self._child is not None
        fd = self._child.child_fd
        start = b"\x1e" + nonce.encode() + b":"
        pending = b""
        while True:
            if self._interrupt_requested:
                output(pending)
                return None, None
            wait = None if deadline is None else max(0.0, deadline - time.monotonic())
            if wait is not None and wait <= 0:
                output(pending)
                return None, None
            try:
                ready, _, _ = select.select([fd], [], [], min(wait, 0.25) if wait is not None else 0.25)
            except InterruptedError:
                continue
            if not ready:
                continue
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                chunk = b""
            if not chunk:
                output(pending)
                return self._died(), None
            if not pending and b"\x1e" not in chunk:
                # Fast path (almost every read): no frame can start here; memchr is ~50x cheaper than find.
                output(chunk)
                continue
            data = pending + chunk
            at = data.find(start)
            if at >= 0:
                end = data.find(b"\x1f", at)
                if end >= 0:
                    output(data[:at])
                    rest = data[end + 1 :]
                    if rest:
                        output(rest)
                    rc_text, _, cwd = data[at + len(start) : end].decode("utf-8", "replace").partition(":")
                    try:
                        return int(rc_text), cwd
                    except ValueError:
                        return 1, cwd
                output(data[:at])
                pending = data[at:]
                continue
            # Hold back only a trailing piece that could be the start of the frame.
            keep = _partial_suffix(data, start)
            output(data[: len(data) - keep])
            pending = data[len(data) - keep :]

    def _died(self) -> int | None:
        """The session ended (EOF). Return bash's exit status, or None."""
        child = self._child
        if child is None:
            return None
        with contextlib.suppress(Exception):
            child.close(force=True)
        status = child.exitstatus if child.exitstatus is not None else (128 + (child.signalstatus or 0))
        self._child = None
        return int(status) if status is not None else None

    def _stop(self, nonce: str, output: OutputSink) -> tuple[int | None, str | None, bool]:
        """Stop the running cell: SIGINT its foreground group, then SIGKILL, then restart bash."""
        if self._child is None:
            self._restart(self._cwd)
            return None, self._cwd, True
        bash = self.pid
        for sig in (signal.SIGINT, signal.SIGKILL):
            if self._child is None:
                break
            try:
                group = os.tcgetpgrp(self._child.child_fd)
            except OSError:
                group = bash
            with contextlib.suppress(OSError):
                if group != bash:
                    os.killpg(group, sig)
                if sig == signal.SIGINT or group == bash:
                    os.kill(bash, signal.SIGINT)
            self._interrupt_requested = False
            code, cwd = self._wait(nonce, output, time.monotonic() + self.GRACE_S)
            if code is not None and self._child is not None:
                return code, cwd, False
        self._restart(self._cwd)
        return None, self._cwd, True


def _scratch_root() -> str | None:
    """A tmpfs for cell files when there is one: creating a file there is ~15x cheaper than on disk."""
    shm = "/dev/shm"
    return shm if os.path.isdir(shm) and os.access(shm, os.W_OK | os.X_OK) else None


_UNSAFE = str.maketrans({c: "_" for c in "/\\:*?\"<>| \t\n'$`"})


def _file_name(name: str, counter: int) -> str:
    """The cell's file name, which is what bash names in its error messages."""
    return f"{counter}-{name.translate(_UNSAFE)[:60]}"


def _partial_suffix(data: bytes, marker: bytes) -> int:
    """Length of the longest suffix of ``data`` that is a proper prefix of ``marker``."""
    last = data.rfind(b"\x1e", max(0, len(data) - len(marker)))
    if last < 0:
        return 0
    tail = data[last:]
    return len(tail) if marker.startswith(tail) else 0
