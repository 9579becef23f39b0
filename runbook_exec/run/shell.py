"""One persistent bash session on a pty that runs cells one at a time, each as a ``bash -eo pipefail`` script.

How a session is built, and why:

* A small ``/bin/sh`` *holder* leads the session and owns the pty as its controlling terminal. It starts a
  **non-interactive** bash whenever the runner asks (one line on the command pipe) and, when that bash ends,
  prints bash's exit status as a framed line on the pty. Background jobs are children of the session, not of
  a session leader that dies, so they survive a bash that ends (a dying session leader would hang them up).
* bash reads the runner's commands from a **pipe**, never from the pty: ``stty``, ``read </dev/tty`` or a
  changed prompt in a cell cannot see, echo or change them. A small ASCII cell's text follows its command
  line on that pipe (no file per cell); a larger or non-ASCII one is a file in a private folder on tmpfs.
  The holder starts a bash only on the session's nonce, so text meant for a bash that just ended is dropped.
  The pty carries the cells' output and, when an operator sits at a terminal, the operator's keystrokes
  (see :meth:`BashSession.wait`).
* Every cell runs under **real errexit**: bash's first input line is a loop that, per cell, turns on
  ``set -eo pipefail`` and ``eval``\\ s the cell's text at the top level. A non-interactive bash exits on
  errexit failures, ``set -u`` errors, ``${X:?}`` and the rest exactly as ``bash -eo pipefail cell.sh``
  would, so a failing cell *ends bash* and its exit status is the cell's status. ``eval`` rather than
  ``source`` keeps two script rules: a top-level ``return`` is an error, and a ``RETURN`` trap does not fire
  at the end of the cell. The loop sits on input line 1 and the cell's name is ``$0``, so bash's messages
  read ``name: line N: ...`` with N counted inside the cell.
* A cell that passes is followed by a status frame (``\\x1e<nonce>:<n>:<rc>:<cwd>\\x1f``) on the pty, after
  every byte the cell printed. A cell that may ``exec`` gets stdin/stdout/stderr of its own, put back after
  it (as a script's end would), so ``exec >/dev/null`` cannot swallow the frame; a closed stdout falls back to
  a private copy of the pty. An ``EXIT`` trap the cell set runs at the cell's end, as in its script.
* Cells that may change shell state (the executor's ``snapshot=True``) leave a **state snapshot** on tmpfs:
  variables, functions, aliases, options, traps, umask. After a cell ended bash (failure, ``exit``,
  timeout, interrupt) the next cell gets a fresh bash restored from the last snapshot and the last known
  working directory: a cell that does not run to its end leaves no state behind.
* A cell that fills the pty faster than the runner passes its output on is read through a **relay** process
  (:mod:`runbook_exec.run.relay`) for the rest of its wait, so the cell writes on while the runner masks.
* Timeouts and interrupts signal only the running cell's processes (found by session id and start time, so
  background jobs of earlier cells live on): SIGINT, a grace period, SIGKILL.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import platform
import re
import secrets
import select
import shlex
import shutil
import signal
import struct
import subprocess
import tempfile
import termios
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from runbook_exec.run import relay

OutputSink = Callable[[bytes], None]

# Functions and variables of the command loop, read by bash at its start.
_INIT = r"""
__rx_n=0 __rx_f= __rx_len= __rx_st=0 __rx_x= __rx_back= __rx_cwd= __rx_src= __rx_tc= __rx_tr=
# The status frame, on the terminal (its private copy 239 when the cell closed stdout).
__rx_frame() {
  builtin printf '\036%s:%s:0:%s\037' "$__rx_nonce" "$__rx_n" "$PWD" 2>&238 ||
    builtin printf '\036%s:%s:0:%s\037' "$__rx_nonce" "$__rx_n" "$PWD" >&239
}
# Before a cell with flag w (cwd=) or r (a restore script, run without errexit), or when xtrace/functrace
# were on: they are off while the runner's own commands run (no trace of them, no RETURN trap for the
# runner's functions) and resume on the cell's line 1.
__rx_rare() {
  if [[ $__rx_f == *w* ]]; then
    __rx_back=$PWD __rx_cwd=${__rx_src%%$'\n'*} __rx_src=${__rx_src#*$'\n'}
    builtin cd -- "$__rx_cwd" || builtin exit 1
  fi
  [[ $__rx_x != *[xT]* ]] || __rx_tr='[[ $__rx_x != *T* ]] || set -T; [[ $__rx_x != *x* ]] || set -x; '
  [[ $__rx_f != *r* ]] || set +e
}
# After a cell with flag w or s: back from its cwd=, state snapshot (the trap listing follows at the top level).
__rx_post() {
  if [[ -n $__rx_back ]]; then builtin cd -- "$__rx_back" 2>&238 || :; __rx_back=; fi
  if [[ $__rx_f == *s* ]]; then __rx_snap; fi
}
__rx_snap() {
  {
    builtin declare -p
    builtin printf '#%s:f\n' "$__rx_nonce"; builtin declare -f
    builtin printf '#%s:F\n' "$__rx_nonce"; builtin declare -Fx
    builtin printf '#%s:a\n' "$__rx_nonce"; builtin alias -p
    builtin printf '#%s:o\n' "$__rx_nonce"; builtin umask -p
    builtin printf '#%s:t\n' "$__rx_nonce"
  } >|"$__rx_dir/state.$__rx_n" 2>&238 || :
}
# A script's EXIT trap runs when the script ends: take the cell's one out, to be run by the loop.
__rx_targ() { __rx_tc=$2; }
__rx_tget() {
  __rx_tc=
  builtin trap -p EXIT >|"$__rx_dir/trap" 2>&238 || return 0
  IFS= builtin read -rd '' __rx_tc <"$__rx_dir/trap" || :
  [[ -n $__rx_tc ]] || return 0
  builtin eval "__rx_targ ${__rx_tc#trap }"
  [[ $__rx_tc != - ]] || __rx_tc=  # posix mode lists a default action as "-"
  builtin trap - EXIT
}
"""

# bash's whole first input line. A cell that ends with a non-zero status while errexit is off (``set +e``)
# still ends bash, so every cell that fails is handled alike (no state kept, next cell in a fresh bash).
#
# Fixed descriptors (high numbers that scripts rarely use; ``exec 9>lock`` or ``{fd}>`` stay free): 237 the
# command pipe, 238 /dev/null, 239 a copy of the pty (cells that exec get it as stdout/stderr). They are
# opened here, not in the init file: bash 5.2 crashes on ``exec 237<&0`` inside ``eval`` or ``source`` while
# it reads its commands from that pipe.
_LOOP = (
    "exec 237<&0 238<>/dev/null 239>&1; exec 0<&238; "
    "IFS= builtin read -rd '' __rx_i <{init}; builtin eval \"$__rx_i\"; builtin unset __rx_i; __rx_frame; "
    # Each statement here costs bash ~15k instructions per cell: the common path (a cell without flags, no
    # tracing) runs as few as possible.
    "while IFS=' ' builtin read -r -u 237 __rx_n __rx_f __rx_len; do "
    # Cell $__rx_n: line 1 its name ($0, the name in bash's messages), then (flag w) its cwd, then its text;
    # the next $__rx_len bytes of the command pipe, or (no length) the file named by its number.
    "case $__rx_len in '') __rx_src=$(<\"$__rx_dir/$__rx_n\") ;; "
    '*) builtin read -r -N "$__rx_len" -u 237 __rx_src ;; esac; '
    "BASH_ARGV0=${__rx_src%%$'\\n'*} __rx_src=${__rx_src#*$'\\n'} __rx_tr=; "
    "set -eo pipefail; "
    "case $__rx_f:$__rx_x in "
    "*[wr]*:* | *:*[xT]*) __rx_rare; case $__rx_f in "
    '*i*) builtin eval "$__rx_tr$__rx_src" </dev/tty >&239 2>&239 ;; '
    '*e*) builtin eval "$__rx_tr$__rx_src" <&238 >&239 2>&239 ;; '
    '*) builtin eval "$__rx_tr$__rx_src" ;; esac ;; '
    # (No colon in the flags or in $-: *i*:* is flag i.)
    '*i*:*) builtin eval "$__rx_tr$__rx_src" </dev/tty >&239 2>&239 ;; '
    '*e*:*) builtin eval "$__rx_tr$__rx_src" <&238 >&239 2>&239 ;; '
    '*) builtin eval "$__rx_tr$__rx_src" ;; esac; '
    "{ __rx_st=$? __rx_x=$-; set +xT; } 2>&-; "
    # $? has no leading zero: "0-" is a passed cell without flags, "0..." a passed cell with some.
    "case $__rx_st$__rx_f in 0-) ;; 0*) "
    'case $__rx_f in *t*) __rx_tget; builtin eval "$__rx_tc" ;; esac; '
    # trap -p at the top level: in a function it would not show the ERR trap.
    "case $__rx_f in *[sw]*) __rx_post; "
    'case $__rx_f in *s*) builtin trap -p >>"$__rx_dir/state.$__rx_n" ;; esac ;; esac ;; '
    '*) builtin exit "$__rx_st" ;; '
    "esac; "
    'builtin printf \'\\036%s:%s:0:%s\\037\' "$__rx_nonce" "$__rx_n" "$PWD" || __rx_frame; done; '
    "builtin printf '\\036%s?\\037' \"$__rx_nonce\" >&239; builtin exit 0"
)

# The session leader. $1: the pty (opening it makes it the controlling terminal), $2: bash.
_HOLDER = r"""
IFS= read -r n || exit 0
exec 3<>"$1"; exec 3>&-
unset BASH_ENV
trap : INT TERM QUIT
while IFS= read -r line; do
  # Only the session's nonce on a line of its own starts a bash: a cell's command (and text) that was meant
  # for a bash that just ended is dropped.
  [ "$line" = "$n" ] || continue
  "$2" --noprofile --norc
  printf '\036%s!%s\037' "$n" "$?"
done
"""

# Runs detached; $1 is the session id. `read` returns at end of file (runner closed or died).
_WATCHDOG = (
    'read -r _ignored || :; pkill -HUP -s "$1" 2>/dev/null || kill -HUP -- "-$1" 2>/dev/null; '
    'sleep 2; pkill -KILL -s "$1" 2>/dev/null || kill -KILL -- "-$1" 2>/dev/null; exit 0'
)

# bash's own variables: read-only, dynamic or owned by the runner; never restored from a snapshot.
_NOT_RESTORED = frozenset(
    {
        "BASH",
        "BASHOPTS",
        "BASHPID",
        "BASH_ALIASES",
        "BASH_ARGC",
        "BASH_ARGV",
        "BASH_ARGV0",
        "BASH_CMDS",
        "BASH_COMMAND",
        "BASH_EXECUTION_STRING",
        "BASH_LINENO",
        "BASH_REMATCH",
        "BASH_SOURCE",
        "BASH_SUBSHELL",
        "BASH_VERSINFO",
        "BASH_VERSION",
        "COMP_WORDBREAKS",
        "DIRSTACK",
        "EPOCHREALTIME",
        "EPOCHSECONDS",
        "EUID",
        "FUNCNAME",
        "GROUPS",
        "HISTCMD",
        "HOSTTYPE",
        "LINENO",
        "MACHTYPE",
        "OSTYPE",
        "PIPESTATUS",
        "PPID",
        "PWD",
        "RANDOM",
        "SECONDS",
        "SHELLOPTS",
        "SHLVL",
        "SRANDOM",
        "UID",
        "_",
    }
)
_DECLARATION = re.compile(r"declare -(\S+) ([A-Za-z_][A-Za-z0-9_]*)(?:=|$)")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_READ_SYSCALLS = {"x86_64": (0, 17, 19), "aarch64": (63, 65, 67)}.get(platform.machine(), (0,))
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
_DIR_PREFIX = "runbook-exec-"
_INLINE_MAX = 16 * 1024


@dataclass(frozen=True)
class ShellResult:
    """How one cell ended."""

    exit_code: int | None  # None when the cell was stopped before it reported a status
    timed_out: bool = False
    interrupted: bool = False
    restarted: bool = False  # the session was lost abnormally and restarted from the last snapshot
    cwd: str = ""
    duration_s: float = 0.0
    waits_for_input: bool = False  # stopped: it read the terminal and no operator can answer
    note: str = ""  # one line for the operator about the session (empty when there is nothing to say)


@dataclass(frozen=True)
class Started:
    """A cell sent to the session whose status has not been read yet."""

    nonce: str
    at: float
    snapshot: bool = False
    ticks: int = 0  # start time in the kernel's clock ticks since boot, to tell the cell's processes apart


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


@dataclass(frozen=True)
class _Outcome:
    """What ended a wait: ``frame`` (the cell passed), ``died`` (bash ended), ``lost`` (bash left its
    command loop), ``gone`` (the whole session ended), ``deadline``, ``interrupt`` or ``input``."""

    kind: str
    code: int | None = None
    cwd: str | None = None


@dataclass(frozen=True)
class _Proc:
    pid: int
    ppid: int
    start: int


class BashSession:
    """A persistent non-interactive bash on a pty (see the module docstring)."""

    GRACE_S = 1.5
    STALL_S = 2.0  # silence before looking whether the cell waits for terminal input
    IDLE_S = 0.25  # period of the idle tick (``output(b"")``) while a cell is silent
    RELAY = True  # a cell that fills the pty gets a relay (see :mod:`runbook_exec.run.relay`)

    def __init__(
        self,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
        columns: int = 200,
        rows: int = 50,
        bash: str = "bash",
        operator: bool | None = None,
    ) -> None:
        """``operator``: keystrokes at the runner's terminal reach the cells (default: stdin and stdout are
        TTYs). Without one, a cell that waits for terminal input is stopped."""
        self._env = dict(os.environ if env is None else env)
        self._env.setdefault("TERM", "dumb")
        self._cwd = str(Path(cwd or os.getcwd()).resolve())
        self._dims = (rows, columns)
        self._bash = shutil.which(bash, path=self._env.get("PATH")) or bash
        self._operator = _operator_at_terminal() if operator is None else operator
        root = _scratch_root()
        remove_dead_scratch(root)
        self._dir = tempfile.mkdtemp(prefix=f"{_DIR_PREFIX}{os.getpid()}-", dir=root)
        self._nonce = secrets.token_hex(8)
        self._marker = b"\x1e" + self._nonce.encode()
        self._counter = 0
        self._prepared: tuple[tuple[str, str], str] | None = None
        self._dump = ""  # the last state snapshot, as bash printed it (held in memory, not on disk)
        self._exports: tuple[str, str] = ("", "")  # (dump, its export -p) cache
        self._interrupt_requested = False
        self._carry = b""  # output read after the last frame: it belongs to the next cell
        self._pending_note = ""  # said with the next cell's result
        self._bash_alive = False
        self._proc: subprocess.Popen[bytes] | None = None
        self._master = -1
        self._commands = -1
        self._pidfd = -1
        self._watch_fd: int | None = None
        self._tty = ""
        self._baseline: list[Any] | None = None
        self._relay: relay.Relay | None = None  # while a busy cell's output is read through one
        self._poller = select.poll()  # whether the pty holds output (its master, once spawned)
        self._spawn()

    # -- lifecycle -------------------------------------------------------------------------------------

    def _spawn(self) -> None:
        """Start the holder on a new pty and a first bash in it."""
        master, slave = os.openpty()
        read_end, write_end = os.pipe()
        try:
            self._tty = os.ttyname(slave)
            attrs = termios.tcgetattr(slave)
            attrs[1] &= ~termios.ONLCR  # keep \n as is: no \r\n to undo, ~30% more throughput
            termios.tcsetattr(slave, termios.TCSANOW, attrs)
            fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", self._dims[0], self._dims[1], 0, 0))
            self._baseline = termios.tcgetattr(slave)
            proc = subprocess.Popen(
                ["/bin/sh", "-c", _HOLDER, "runbook-exec-session", self._tty, self._bash],
                stdin=read_end,
                stdout=slave,
                stderr=slave,
                cwd=self._cwd,
                env={k: v for k, v in self._env.items() if k != "BASH_ENV"},
                start_new_session=True,
            )
        except (OSError, termios.error) as exc:
            for fd in (master, write_end):
                os.close(fd)
            raise ShellError(f"cannot start bash: {exc}") from None
        finally:
            os.close(slave)
            os.close(read_end)
        os.set_blocking(master, False)
        self._proc, self._master, self._commands = proc, master, write_end
        self._poller = select.poll()
        self._poller.register(master, select.POLLIN)
        try:
            self._pidfd = os.pidfd_open(proc.pid)
        except OSError:  # Linux before 5.3: the holder's end is noticed at the idle tick instead
            self._pidfd = -1
        self._watch(proc.pid)
        init = Path(self._dir, "init")
        bash_env = self._env.get("BASH_ENV")
        prelude = f"__rx_nonce={self._nonce} __rx_dir={shlex.quote(self._dir)}\n"
        if bash_env is not None:
            prelude += f"export BASH_ENV={shlex.quote(bash_env)}\n"
        init.write_text(prelude + _INIT)
        self._send(self._nonce + "\n")
        self._start_bash()

    def _start_bash(self) -> None:
        """Ask the holder for a fresh bash and wait until its command loop runs."""
        self._send(f"{self._nonce}\n" + _LOOP.replace("{init}", shlex.quote(f"{self._dir}/init")) + "\n")
        self._bash_alive = True
        outcome = self._wait("0", lambda _b: None, time.monotonic() + 10, interruptible=False)
        if outcome.kind != "frame":
            self._kill()
            raise ShellError("bash did not start in 10 s")

    @property
    def exports(self) -> str:
        """``export -p`` as of the last cell run with ``snapshot=True`` (empty before)."""
        dump, exports = self._exports
        if dump is not self._dump:
            exports = _exports_of(self._dump)
            self._exports = (self._dump, exports)
        return exports

    @property
    def cwd(self) -> str:
        """The session's working directory after the last cell."""
        return self._cwd

    @property
    def pid(self) -> int:
        """The session id (the holder's pid)."""
        assert self._proc is not None
        return self._proc.pid

    def restore(self, cwd: str, exports: str) -> None:
        """Put a fresh session back where an earlier one was: working directory and exported variables."""
        script = f"builtin cd -- {shlex.quote(cwd)}\n{exports}"
        # With a snapshot, what was restored is also what a later --resume or restart starts from.
        started = self.start(script, name="restore", snapshot=True)
        result = self.wait(started, lambda _data: None, timeout=10)
        self._forget(started.nonce)
        if result.exit_code != 0:
            raise ShellError(f"could not restore the session state (cwd {cwd})")

    def close(self) -> None:
        """End the session and remove its private files."""
        self._kill()
        shutil.rmtree(self._dir, ignore_errors=True)

    def _kill(self) -> None:
        self._stop_relay()
        proc, self._proc = self._proc, None
        self._bash_alive = False
        if proc is not None:
            with contextlib.suppress(OSError):
                os.killpg(proc.pid, signal.SIGHUP)
            try:
                proc.wait(timeout=1)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(OSError):
                    os.killpg(proc.pid, signal.SIGKILL)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=1)
        for name in ("_master", "_commands", "_pidfd"):
            fd = getattr(self, name)
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
                setattr(self, name, -1)
        self._carry = b""
        self._release_watchdog()

    def _watch(self, session: int) -> None:
        """Start a watchdog that ends every process of the session once this runner is gone.

        bash does not pass a hangup on to background jobs, so a runner killed with SIGKILL would leave a
        cell's processes running. The watchdog blocks reading a pipe whose only writer is this process: end
        of file, from a normal close or from the kernel closing a dead runner's descriptors, makes it signal
        the whole session (HUP, then KILL).
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

    def _revive(self) -> None:
        """A fresh bash (and, if the holder is gone too, a fresh session) restored from the last snapshot."""
        if self._proc is None or self._proc.poll() is not None:
            self._kill()
            if not Path(self._cwd).is_dir():
                self._cwd = str(Path(self._cwd).parent if Path(self._cwd).parent.is_dir() else Path.home())
            self._spawn()
        else:
            self._start_bash()
        script = _restore_script(self._dump, self._cwd, self._env, self._nonce)
        tag = self._send_cell(script, "restore", "r")
        outcome = self._wait(tag, lambda _b: None, time.monotonic() + 10, interruptible=False)
        self._forget(tag)
        if outcome.kind == "frame":
            if outcome.cwd:
                self._cwd = outcome.cwd
            return
        # The snapshot itself ends bash (it holds something bash cannot take back): go on without it.
        self._dump = ""
        self._pending_note = (
            "the shell state could not be restored; this cell starts in a fresh shell (the run's environment,"
            f" cwd {self._cwd})"
        )
        if outcome.kind in ("died", "lost", "gone"):
            self._bash_alive = False
            self._revive()

    def _forget(self, tag: str) -> None:
        """Remove a written cell that holds secrets (a restore script): it stays on disk no longer."""
        with contextlib.suppress(OSError):
            os.unlink(f"{self._dir}/{tag}")

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

        Until :meth:`wait`, the cell's output stays in the pty, so the caller can still write its own
        lines first. ``next_cell`` (source, name), when it goes by file, is written while bash runs this
        one, so the next call finds it ready (the two cores overlap instead of taking turns). ``stdin_tty``: the cell's
        stdin is the terminal instead of ``/dev/null``.
        """
        self._settle()
        if not self._bash_alive:
            self._revive()
        at = time.monotonic()
        flags = _flags(source, snapshot, stdin_tty) + ("w" if cwd else "")
        prepared, self._prepared = self._prepared, None
        text = _cell_text(source, name, cwd)
        if _inline(text):
            self._counter += 1
            tag = str(self._counter)
            command = _command(tag, flags, len(text)) + text
        else:
            if prepared is not None and prepared[0] == (source, name) and not cwd:
                tag = prepared[1]
            else:
                tag = self._write(source, name, cwd)
            command = _command(tag, flags, None)
        if self._baseline is not None:
            # Each cell starts on a terminal in the runner's mode, whatever `stty` an earlier cell ran (one
            # system call to look, instead of the four of setting it, when nothing changed it).
            with contextlib.suppress(termios.error):
                if termios.tcgetattr(self._master) != self._baseline:
                    termios.tcsetattr(self._master, termios.TCSANOW, self._baseline)
        ticks = int(time.clock_gettime(time.CLOCK_BOOTTIME) * _CLOCK_TICKS)
        self._interrupt_requested = False
        self._send(command)
        if next_cell is not None and not _inline(_cell_text(*next_cell, None)):
            self._prepared = (next_cell, self._write(*next_cell, None))
        return Started(nonce=tag, at=at, snapshot=snapshot, ticks=ticks)

    def _settle(self) -> None:
        """Take a frame that came after the last cell's own one (bash ended between cells) before sending a
        command that the holder would otherwise read as its own."""
        # Almost always nothing came: a poll says so without a read that fails with EAGAIN (raising and
        # suppressing that cost ~5 us here, on the way from one cell's frame to the next cell's start).
        if self._master >= 0 and self._poller.poll(0):
            with contextlib.suppress(OSError):
                self._carry += os.read(self._master, 65536)
        if self._marker not in self._carry:
            return
        kept: list[bytes] = []
        outcome, rest = self._frames(self._carry, b"", kept.append)
        if outcome is None:
            self._carry = b"".join(kept) + rest
            return
        self._carry = b"".join(kept) + self._carry
        if outcome.kind == "lost":
            self._end_bash()
        if outcome.kind in ("died", "lost"):
            self._bash_alive = False

    def wait(self, started: Started, output: OutputSink, *, timeout: float | None = None) -> ShellResult:
        """Stream a started cell's raw output to ``output`` until its status arrives (or its deadline).

        With an operator at a terminal, the operator's keystrokes go to the cell's terminal meanwhile (the
        operator's terminal is in cbreak mode without local echo: the pty echoes, so input typed while a
        program has echo off, a password, never shows); Ctrl-C still signals the runner.
        """
        deadline = started.at + timeout if timeout else None
        if self._operator:
            with _operator_keys() as forward:
                outcome, restarted = self._wait_or_stop(started, output, deadline, forward)
        else:
            outcome, restarted = self._wait_or_stop(started, output, deadline, False)
        kind = outcome.kind
        note, self._pending_note = self._pending_note, ""
        if kind == "frame":
            if outcome.cwd:
                self._cwd = outcome.cwd
            if started.snapshot:
                self._read_snapshot(started.nonce)
        elif kind == "died":
            self._bash_alive = False
            if outcome.code == 0 and not note:
                note = (
                    "the cell ended the shell (exit or exec): the next cell starts from the state after the last"
                    " cell that ran to its end"
                )
        elif kind in ("lost", "gone"):
            if kind == "lost":
                self._end_bash()
            self._bash_alive = False
            restarted = True
            what = (
                "took over the shell's command input (exec, or break/continue outside a loop)"
                if kind == "lost"
                else "ended the shell's whole session"
            )
            note = note or (
                f"the cell {what}: the session was restarted from the state after the last cell that ran to its end"
            )
        return ShellResult(
            exit_code=outcome.code if kind in ("frame", "died") else None,
            timed_out=kind == "deadline",
            interrupted=kind == "interrupt",
            restarted=restarted,
            cwd=self._cwd,
            duration_s=time.monotonic() - started.at,
            waits_for_input=kind == "input",
            note=note,
        )

    def _wait_or_stop(
        self, started: Started, output: OutputSink, deadline: float | None, forward: bool
    ) -> tuple[_Outcome, bool]:
        outcome = self._wait(started.nonce, output, deadline, forward=forward, ticks=started.ticks)
        if outcome.kind in ("deadline", "interrupt", "input"):
            return outcome, self._stop(started, output, forward)
        return outcome, False

    def _read_snapshot(self, tag: str) -> None:
        # One file per cell: bash may already write the snapshot of a cell queued after this one.
        path = f"{self._dir}/state.{tag}"
        with contextlib.suppress(OSError), open(path, encoding="utf-8", errors="surrogateescape") as fh:
            self._dump = fh.read()
        # It holds every value, secrets included: kept in memory, not on disk.
        with contextlib.suppress(OSError):
            os.unlink(path)

    def _write(self, source: str, name: str, cwd: str | None) -> str:
        """Write a cell to a fresh file in the session's private directory; return its number."""
        self._counter += 1
        tag = str(self._counter)
        fd = os.open(f"{self._dir}/{tag}", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, _cell_text(source, name, cwd).encode())
        finally:
            os.close(fd)
        return tag

    def _send_cell(self, source: str, name: str, flags: str) -> str:
        tag = self._write(source, name, None)
        self._send(_command(tag, flags, None))
        return tag

    def _send(self, text: str) -> None:
        data = text.encode()
        while data:
            try:
                written = os.write(self._commands, data)
            except BrokenPipeError:
                return  # the holder is gone: its pidfd tells the waiting side
            data = data[written:]

    def _wait(
        self,
        tag: str,
        output: OutputSink,
        deadline: float | None,
        *,
        forward: bool = False,
        ticks: int = 0,
        interruptible: bool = True,
    ) -> _Outcome:
        """Read the session's output until cell ``tag``'s frame, bash's end, the deadline or (when
        ``interruptible``) an interrupt.

        A cell that fills the pty faster than the runner passes its output on gets a :mod:`relay
        <runbook_exec.run.relay>` for the rest of this wait; what the relay holds when the wait ends is
        the start of what the next wait reads.
        """
        try:
            return self._read_until(tag, output, deadline, forward, ticks, interruptible)
        finally:
            if self._relay is not None:
                self._carry += self._stop_relay()

    def _read_until(
        self,
        tag: str,
        output: OutputSink,
        deadline: float | None,
        forward: bool,
        ticks: int,
        interruptible: bool,
    ) -> _Outcome:
        master, pidfd = self._master, self._pidfd
        want = tag.encode()
        source = master  # the pty, or the pipe of a relay that drains it
        seen = 0
        watched = [fd for fd in (master, pidfd, 0 if forward else -1) if fd >= 0]
        pending, self._carry = self._carry, b""
        if pending:
            outcome, pending = self._frames(pending, want, output)
            if outcome is not None:
                return outcome
        quiet_since = time.monotonic()
        next_look = quiet_since + self.STALL_S
        while True:
            if self._interrupt_requested and interruptible:
                output(pending)
                return _Outcome("interrupt")
            now = time.monotonic()
            wait = self.IDLE_S
            if deadline is not None:
                if now >= deadline:
                    output(pending)
                    return _Outcome("deadline")
                wait = min(wait, deadline - now)
            ready, _, _ = select.select(watched, [], [], wait)
            if not ready:
                output(b"")  # idle tick: lets the masker release a tail it holds back
                if pidfd < 0 and self._proc is not None and self._proc.poll() is not None:
                    return self._last_words(pending, want, output)
                now = time.monotonic()
                if now - quiet_since >= self.STALL_S and now >= next_look and tag != "0":
                    next_look = now + 1.0
                    stall = self._stalled(ticks)
                    if stall is not None:
                        output(pending)
                        return _Outcome(stall)
                continue
            if source in ready:
                chunk = _read_burst(master) if source == master else _read_pipe(source)
                if chunk:
                    quiet_since = time.monotonic()
                    if not pending and b"\x1e" not in chunk:
                        # Fast path (almost every read): no frame can start here; memchr is ~50x cheaper.
                        output(chunk)
                    else:
                        outcome, pending = self._frames(pending + chunk, want, output)
                        if outcome is not None:
                            return outcome
                    seen += len(chunk)
                    if len(chunk) >= _BURST and source == master and seen >= _RELAY_AFTER and self.RELAY:
                        self._relay = relay.start(master)
                        if self._relay is not None:
                            source = watched[0] = self._relay.fd
                elif chunk == b"" and source != master:
                    # The relay ended by itself (the pty is gone): what is left there is read directly.
                    pending += self._stop_relay()
                    source = watched[0] = master
                elif chunk == b"" and self._proc is not None and self._proc.poll() is not None:
                    output(pending)
                    return _Outcome("gone")
            if forward and 0 in ready:
                _forward_keys(master)
            if pidfd in ready and source not in ready:
                return self._last_words(pending, want, output)

    def _stop_relay(self) -> bytes:
        """Stop the relay, if one runs; what it passed on that was not read yet."""
        helper, self._relay = self._relay, None
        return helper.stop() if helper is not None else b""

    def _last_words(self, pending: bytes, want: bytes, output: OutputSink) -> _Outcome:
        """The holder ended: what is left in the relay and the pty is the last of the session's output."""
        pending += self._stop_relay()
        outcome, pending = self._frames(pending + _drain(self._master), want, output)
        if outcome is not None:
            return outcome
        output(pending)
        return _Outcome("gone")

    def _frames(self, data: bytes, want: bytes, output: OutputSink) -> tuple[_Outcome | None, bytes]:
        """Pass ``data`` on up to the frame that ends the wait; return it and what must wait for more."""
        marker = self._marker
        while True:
            at = data.find(marker)
            if at < 0:
                keep = _partial_suffix(data, marker)
                if len(data) > keep:
                    output(data[: len(data) - keep])
                return None, data[len(data) - keep :]
            end = data.find(b"\x1f", at)
            if end < 0:
                if at:
                    output(data[:at])
                return None, data[at:]
            if at:
                output(data[:at])
            body, data = data[at + len(marker) : end], data[end + 1 :]
            kind = body[:1]
            if kind == b":":
                number, _, rest = body[1:].partition(b":")
                if number != want:
                    continue  # the frame of a cell given up on (timeout) or of a restore
                rc, _, cwd = rest.partition(b":")
                self._carry = data
                return _Outcome("frame", _int(rc), cwd.decode("utf-8", "surrogateescape")), b""
            if kind == b"!":
                self._carry = data
                return _Outcome("died", _int(body[1:])), b""
            if kind == b"?":
                self._carry = data
                return _Outcome("lost"), b""

    def _stalled(self, ticks: int) -> str | None:
        """Why a silent cell will never finish on its own: ``lost`` (bash waits for a command although the
        cell did not report), ``input`` (it reads the terminal and no operator is there), or None."""
        holder = self._proc.pid if self._proc is not None else -1
        procs = _session_processes(holder)
        pipe = f"pipe:[{os.fstat(self._commands).st_ino}]" if self._commands >= 0 else ""
        for proc in procs:
            with contextlib.suppress(PermissionError):  # `exec sudo ...` replaced bash
                if proc.ppid == holder and _reading(proc.pid) == pipe:
                    return "lost"
        if self._operator:
            return None
        for proc in procs:
            # bash itself (`read` in the cell) or what the cell started (start times have a 10 ms resolution);
            # not background jobs of earlier cells
            if proc.pid == holder or (proc.ppid != holder and proc.start < ticks):
                continue
            try:
                reading = _reading(proc.pid)
            except PermissionError:
                # A privileged program (sudo) cannot be looked into: a terminal with echo off (a password
                # prompt) is the sign.
                if not self._echo_on():
                    return "input"
                continue
            if reading in (self._tty, "/dev/tty"):
                return "input"
        return None

    def _echo_on(self) -> bool:
        try:
            return bool(termios.tcgetattr(self._master)[3] & termios.ECHO)
        except termios.error:
            return True

    def _end_bash(self) -> None:
        """End a bash that left its command loop (it may still wait for a command) and take its end frame."""
        holder = self._proc.pid if self._proc is not None else -1
        for proc in _session_processes(holder):
            if proc.ppid == holder:
                with contextlib.suppress(OSError):
                    os.kill(proc.pid, signal.SIGKILL)
        if self._wait("", lambda _b: None, time.monotonic() + 2.0, interruptible=False).kind != "died":
            self._kill()

    def _stop(self, started: Started, output: OutputSink, forward: bool) -> bool:
        """Stop the running cell: SIGINT its processes and bash, then SIGKILL. True when the whole session
        had to be started again."""
        holder = self._proc.pid if self._proc is not None else -1
        for sig, grace in ((signal.SIGINT, self.GRACE_S), (signal.SIGKILL, 2.0)):
            if self._proc is None or self._proc.poll() is not None:
                break
            procs = _session_processes(holder)
            bash = [p.pid for p in procs if p.ppid == holder]
            cell = [p.pid for p in procs if p.pid != holder and p.pid not in bash and p.start >= started.ticks]
            for pid in bash + cell:
                with contextlib.suppress(OSError):
                    os.kill(pid, sig)
            self._interrupt_requested = False
            outcome = self._wait(started.nonce, output, time.monotonic() + grace, forward=forward)
            if outcome.kind == "frame":
                # It finished after all; a stopped cell still leaves no state: end this bash.
                for pid in bash:
                    with contextlib.suppress(OSError):
                        os.kill(pid, signal.SIGKILL)
                outcome = self._wait("", output, time.monotonic() + 2.0, forward=forward)
            if outcome.kind == "lost":
                self._end_bash()
            if outcome.kind in ("died", "lost"):
                self._bash_alive = False
                return False
            if outcome.kind == "gone":
                break
        self._bash_alive = False
        self._kill()
        return True


def _flags(source: str, snapshot: bool, stdin_tty: bool) -> str:
    """What the command loop does around a cell besides running it: ``s`` snapshot the state after it,
    ``t`` run an EXIT trap it set, ``e`` give it stdin/stdout/stderr of its own and put them back after it
    (it may ``exec`` redirections, which a script's end would undo), ``i`` stdin from the terminal."""
    flags = "s" if snapshot else ""
    if "trap" in source:
        flags += "t"
    if "exec" in source:
        flags += "e"
    return flags + ("i" if stdin_tty else "")


def _command(tag: str, flags: str, length: int | None) -> str:
    """A command line for the loop: cell number, flags and (text on the pipe) the text's length."""
    return f"{tag} {flags or '-'} {'' if length is None else length}\n"


def _cell_text(source: str, name: str, cwd: str | None) -> str:
    """What bash reads for a cell: line 1 becomes $0 (bash names it in its messages), a cwd (flag w)
    follows, then the source."""
    header = _one_line(name) + "\n" + (_one_line(cwd) + "\n" if cwd else "")
    return header + source + ("" if source.endswith("\n") else "\n")


def _inline(text: str) -> bool:
    """Whether a cell's text goes through the command pipe right after its command line (no file to create,
    read and remove): ASCII (so bash's ``read -N``, which counts characters in the cell's locale, counts
    bytes), no NUL (which ``read`` drops) and small (the pipe holds it while bash reads it)."""
    return text.isascii() and len(text) <= _INLINE_MAX and "\0" not in text


def _int(text: bytes) -> int:
    try:
        return int(text)
    except ValueError:
        return 1


def _one_line(text: str) -> str:
    return text.replace("\r", " ").replace("\n", " ")


def _partial_suffix(data: bytes, marker: bytes) -> int:
    """Length of the longest suffix of ``data`` that is a proper prefix of ``marker``."""
    last = data.rfind(b"\x1e", max(0, len(data) - len(marker)))
    if last < 0:
        return 0
    tail = data[last:]
    return len(tail) if marker.startswith(tail) else 0


_BURST = 256 << 10  # at most this much is read in one go before it is passed on
# A relay takes ~7 ms to start and ~2 to stop, about what it saves on 1 MiB: a cell that printed less never
# starts one (nor one whose output never fills a whole burst).
_RELAY_AFTER = 1 << 20
_PIPE_READ = 128 << 10  # reads of a relay's pipe: larger ones raised peak RSS by 2-4 MiB, no faster
_SHORT_READ = 1024  # a read shorter than this emptied the pty (a full one returns 4 KiB)


def _read_burst(fd: int) -> bytes | None:
    """What the pty holds right now, up to about :data:`_BURST` bytes; None when it holds nothing, b"" when
    nothing holds it any more (EIO).

    A pty read returns at most 4 KiB; reading on until it is empty (a short read says it is), without a
    select() in between, hands the masker, the terminal and the transcript one block per burst instead of
    one per 4 KiB (the cost of a busy cell is mostly per call). It never waits for more, so a quiet cell's
    last bytes are not delayed.
    """
    parts: list[bytes] = []
    size = 0
    while size < _BURST:
        try:
            chunk = os.read(fd, 65536)
        except BlockingIOError:
            break
        except OSError:
            if parts:
                break  # passed on now; the next read reports EIO again
            return b""
        if not chunk:
            if parts:
                break
            return b""
        parts.append(chunk)
        size += len(chunk)
        if len(chunk) < _SHORT_READ:
            break  # the pty was drained: another read would only fail with EAGAIN (an exception, ~4 us)
    if not parts:
        return None
    return parts[0] if len(parts) == 1 else b"".join(parts)


def _read_pipe(fd: int) -> bytes | None:
    """What a relay's pipe holds, up to :data:`_PIPE_READ` bytes in one read; None when empty, b"" at its end."""
    try:
        return os.read(fd, _PIPE_READ)
    except BlockingIOError:
        return None


def _drain(fd: int) -> bytes:
    """Everything the pty still holds (non-blocking)."""
    parts = []
    while True:
        try:
            chunk = os.read(fd, 65536)
        except OSError:
            break
        if not chunk:
            break
        parts.append(chunk)
    return b"".join(parts)


def _session_processes(session: int) -> list[_Proc]:
    """Every process of a session (one pass over /proc; only when a cell is stopped or silent)."""
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as fh:
                stat = fh.read()
        except OSError:
            continue
        fields = stat[stat.rfind(b")") + 2 :].split()
        if len(fields) > 19 and int(fields[3]) == session:
            found.append(_Proc(int(entry.name), int(fields[1]), int(fields[19])))
    return found


def _reading(pid: int) -> str | None:
    """What ``pid`` is blocked reading (the target of the descriptor), or None when it is not reading."""
    try:
        with open(f"/proc/{pid}/syscall", encoding="ascii") as fh:
            parts = fh.read().split()
    except PermissionError:
        raise
    except OSError:
        return None
    if len(parts) < 2 or not parts[0].isdigit() or int(parts[0]) not in _READ_SYSCALLS:
        return None
    try:
        return os.readlink(f"/proc/{pid}/fd/{int(parts[1], 16)}")
    except (OSError, ValueError):
        return None


def _operator_at_terminal() -> bool:
    try:
        return os.isatty(0) and os.isatty(1)
    except OSError:
        return False


@contextlib.contextmanager
def _operator_keys() -> Iterator[bool]:
    """While a cell runs: the operator's terminal in cbreak mode with signals kept and local echo off.
    Yields whether keystrokes are forwarded. The terminal's mode is restored whatever ends the wait."""
    try:
        saved = termios.tcgetattr(0)
    except termios.error:
        yield False
        return
    mode = list(saved)
    mode[3] &= ~(termios.ICANON | termios.ECHO | termios.ECHONL)
    cc = list(saved[6])
    cc[termios.VMIN] = 1
    cc[termios.VTIME] = 0
    mode[6] = cc
    try:
        termios.tcsetattr(0, termios.TCSANOW, mode)
        yield True
    finally:
        with contextlib.suppress(termios.error):
            termios.tcsetattr(0, termios.TCSANOW, saved)


def _forward_keys(master: int) -> None:
    try:
        keys = os.read(0, 1024)
    except OSError:
        return
    if keys:
        with contextlib.suppress(OSError):  # a full input queue (the cell does not read): keys are dropped
            os.write(master, keys)


def _sections(dump: str, nonce: str) -> dict[str, list[str]]:
    """Split a state snapshot into its parts: ``v`` variables, ``f`` functions, ``F`` function names,
    ``a`` aliases, ``o`` options, ``t`` traps."""
    parts: dict[str, list[str]] = {"v": []}
    current = parts["v"]
    head = f"#{nonce}:"
    for line in dump.split("\n"):
        if line.startswith(head) and len(line) == len(head) + 1:
            current = parts.setdefault(line[-1], [])
        else:
            current.append(line)
    return parts


def _exports_of(dump: str) -> str:
    """The ``export -p`` listing contained in a snapshot's variables."""
    out = []
    for line in dump[: dump.find("\n#")].split("\n"):
        # "declare -<flags> NAME..." (one line each: values with newlines are printed as $'...')
        if line.startswith("declare -") and "x" in line[9 : line.find(" ", 9)]:
            out.append(line)
    return "\n".join(out) + ("\n" if out else "")


def _restore_script(dump: str, cwd: str, env: Mapping[str, str], nonce: str) -> str:
    """A script that puts a fresh bash back in the state of a snapshot (what bash cannot take back, such
    as its read-only variables, is left out; its messages are discarded)."""
    lines = [f"builtin cd -- {shlex.quote(cwd)}"]
    if not dump:
        return lines[0] + "\n"
    parts = _sections(dump, nonce)
    names: set[str] = set()
    values: dict[str, str] = {}
    for line in parts.get("v", []):
        match = _DECLARATION.match(line)
        if not match:
            continue
        name = match.group(2)
        names.add(name)
        if name in ("SHELLOPTS", "BASHOPTS", "__rx_x"):
            values[name] = line.partition("=")[2].strip('"')
        if name in _NOT_RESTORED or name.startswith("__rx_"):
            continue
        lines.append(line)
    gone = sorted(n for n in env if n not in names and _NAME.fullmatch(n) and n not in _NOT_RESTORED)
    if gone:
        lines.append("builtin unset -v " + " ".join(gone))
    lines += [ln for ln in parts.get("f", []) if ln]
    lines += [ln for ln in parts.get("F", []) if ln.startswith("declare -fx ")]
    lines += [ln for ln in parts.get("a", []) if ln]
    lines += [ln for ln in parts.get("o", []) if ln]
    # Options, from the snapshot's BASHOPTS and SHELLOPTS: all off, then the saved ones on.
    saved = [o for o in values.get("BASHOPTS", "").split(":") if o and o not in ("login_shell", "restricted_shell")]
    lines.append('for __rx_o in ${BASHOPTS//:/ }; do builtin shopt -u "$__rx_o"; done')
    if saved:
        lines.append("builtin shopt -s " + " ".join(saved))
    saved = [o for o in values.get("SHELLOPTS", "").split(":") if o and o not in ("errexit", "xtrace", "functrace")]
    lines.append('for __rx_o in ${SHELLOPTS//:/ }; do builtin set +o "$__rx_o"; done')
    if saved:
        lines.append("builtin set" + "".join(f" -o {o}" for o in saved))
    # Traps last: a failing line above must not run the cell's ERR trap.
    lines += [ln for ln in parts.get("t", []) if ln]
    script = "{\n" + "\n".join(lines) + "\n} >&238 2>&238 || :\n"
    # xtrace and functrace were off while the snapshot was taken; the loop resumes them from $- (here).
    tracing = values.get("__rx_x", "")
    return script + ("set -T\n" if "T" in tracing else "") + ("set -x\n" if "x" in tracing else "")


def _scratch_root() -> str | None:
    """A tmpfs for cell files when there is one: creating a file there is ~15x cheaper than on disk."""
    shm = "/dev/shm"
    return shm if os.path.isdir(shm) and os.access(shm, os.W_OK | os.X_OK) else None


def remove_dead_scratch(root: str | None = None) -> list[str]:
    """Remove the cell folders of runs whose runner is gone (killed with SIGKILL, power loss): only
    folders of this user whose owning runner pid no longer exists. Returns what was removed."""
    base = root or tempfile.gettempdir()
    removed: list[str] = []
    try:
        entries = list(os.scandir(base))
    except OSError:
        return removed
    uid = os.getuid()
    for entry in entries:
        owner, _, rest = entry.name[len(_DIR_PREFIX) :].partition("-")
        if not (entry.name.startswith(_DIR_PREFIX) and owner.isdigit() and rest):
            continue
        try:
            if entry.stat(follow_symlinks=False).st_uid != uid or not entry.is_dir(follow_symlinks=False):
                continue
            os.kill(int(owner), 0)
        except ProcessLookupError:
            shutil.rmtree(entry.path, ignore_errors=True)
            removed.append(entry.path)
        except OSError:
            continue
    return removed
