"""Run a plan's cells in order in one shell session. Cell failures are data, not exceptions.

Output path (the only one): shell bytes -> ``MaskStream`` -> terminal, transcript and the cell's capture.
"""

from __future__ import annotations

import functools
import getpass
import itertools
import re
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import NamedTuple

from runbook_exec.doc.document import Cell
from runbook_exec.records.report import Transcript, plain
from runbook_exec.records.results import (
    FAILED,
    INTERRUPTED,
    PASSED,
    REFUSED,
    SKIPPED,
    TIMED_OUT,
    CellResult,
    RunReport,
    source_sha256,
)
from runbook_exec.run.console import Console
from runbook_exec.run.plan import Plan
from runbook_exec.run.shell import Shell, ShellError, ShellResult, Started
from runbook_exec.secrets.masking import MaskStream, Redactor

TAIL_LINES = 20
_KEEP = 64 * 1024
_ERROR_LINE = re.compile(rb"(?i)(error|fail|fatal|denied|refused|not found|exception|traceback|unhealthy|cannot|panic)")

# Answer to a confirmation: "run", "skip" or "quit".
Confirm = Callable[[Cell, str], str]

# Cells that may change shell state (variables, functions, aliases, options, traps, umask, cwd). Only these
# pay for a state snapshot (~0.2 ms; what a new bash after a failure and ``--resume`` start from); a cell of
# plain commands does not. Assignments without `=`: read, mapfile, printf -v, getopts, ((i++)).
_STATEFUL = re.compile(
    r"=|\b(export|declare|typeset|readonly|unset|source|eval|cd|pushd|popd|set|shopt|alias|unalias|local|trap"
    r"|exec|umask|read|mapfile|readarray|getopts|let|enable)\b|printf\s+-v|\(\(|(^|[;&|({\s])\.\s"
)
_FUNCTION_DEF = re.compile(r"(?m)^\s*(?:function\s+)?([A-Za-z_][\w:-]*)\s*\(\s*\)")


class Capture:
    """Keeps the head and tail of one cell's masked output, for the result's error line and last lines."""

    def __init__(self) -> None:
        self.head = bytearray()
        self.tail = bytearray()

    def add(self, data: bytes) -> None:
        if len(self.head) < _KEEP:
            self.head += data[: _KEEP - len(self.head)]
        self.tail += data
        if len(self.tail) > 2 * _KEEP:
            del self.tail[: len(self.tail) - _KEEP]

    def last_lines(self, n: int = TAIL_LINES) -> tuple[str, ...]:
        if not self.tail:
            return ()
        text = plain(bytes(self.tail)).replace(b"\r\n", b"\n").rstrip(b"\n")
        lines = [ln.rsplit(b"\r", 1)[-1] for ln in text.split(b"\n")][-n:] if text else []
        return tuple(ln.decode("utf-8", "replace") for ln in lines)

    def first_error(self) -> str | None:
        for source in (plain(bytes(self.head)), plain(bytes(self.tail))):
            for line in source.replace(b"\r\n", b"\n").split(b"\n"):
                if _ERROR_LINE.search(line):
                    return line.strip().decode("utf-8", "replace")[:500]
        lines = self.last_lines(1)
        return lines[0][:500] if lines else None


class _Launch(NamedTuple):
    """The arguments of a cell's start that depend on the plan alone (prepared while bash runs a cell)."""

    script: str
    name: str
    stateful: bool  # may change shell state by itself (see _STATEFUL)
    defines: tuple[str, ...]  # the functions it defines
    next_cell: tuple[str, str] | None
    stdin_tty: bool


@dataclass
class _State:
    failed: bool = False
    interrupted: int = 0  # number of interrupt requests (1: stop the cell, 2: also skip failure cells)
    signal_exit: int = 130
    quit: bool = False


class Executor:
    """Runs a :class:`Plan` through a :class:`Shell`; every byte shown or stored passes the redactor."""

    def __init__(
        self,
        plan: Plan,
        shell: Shell,
        redactor: Redactor,
        console: Console,
        transcript: Transcript | None = None,
        confirm: Confirm | None = None,
        step: bool = False,
        on_cell_done: Callable[[Cell, CellResult, ShellResult | None], None] | None = None,
        on_cell_start: Callable[[Cell], None] | None = None,
    ) -> None:
        self.plan = plan
        self.shell = shell
        self.redactor = redactor
        self.console = console
        self.transcript = transcript
        self.confirm = confirm
        self.step = step
        self.on_cell_done = on_cell_done
        self.on_cell_start = on_cell_start
        self._state = _State()
        self._functions: set[str] = set()
        self.prompting = False
        self._pending: tuple[Cell, Started] | None = None
        self._names = self._masked_names()
        cells = plan.cells
        self._following = {a.index: b for a, b in itertools.pairwise(cells)}
        self._launches: dict[int, _Launch] = {}

    def _masked_names(self) -> dict[int, tuple[str | None, str]]:
        """Each cell's section and label, masked once for the whole run (one redactor call, not two per cell)."""
        cells = self.plan.cells
        joined = "\n".join(f"{c.section or ''}\t{c.label}" for c in cells)
        lines = self.redactor.mask(joined).split("\n") if cells else []
        if len(lines) != len(cells):  # a secret spanning a line break: mask one by one
            lines = [self.redactor.mask(f"{c.section or ''}\t{c.label}") for c in cells]
        names: dict[int, tuple[str | None, str]] = {}
        for cell, line in zip(cells, lines, strict=True):
            section, _, label = line.partition("\t")
            names[cell.index] = (section or None, label)
        return names

    # -- signals ---------------------------------------------------------------------------------------

    def interrupt(self, exit_code: int = 130) -> None:
        """First call: stop the running cell and go on with failure cells. Second: skip those too."""
        self._state.interrupted += 1
        self._state.signal_exit = exit_code
        self._state.failed = True  # from now on only when=failure|always cells run
        self.shell.interrupt()
        if self.prompting:
            # A question is waiting for an answer: Ctrl-C means "no" (and stop), not "ignore".
            raise KeyboardInterrupt

    # -- output ----------------------------------------------------------------------------------------

    def _say(self, text: str, masked_already: bool = False, flush: bool = True) -> None:
        masked = text if masked_already else self.redactor.mask(text)
        self.console.write(masked.encode(), flush)
        if self.transcript:
            self.transcript.note(masked)

    # -- running ---------------------------------------------------------------------------------------

    def run(self) -> RunReport:
        started = datetime.now(UTC)
        results: list[CellResult] = []
        total = len(self.plan.cells)
        for warning in self.plan.warnings:
            self._say(self.console.note(f"warning: {warning}"))
        for position, cell in enumerate(self.plan.cells, 1):
            results.append(self._one(position, total, cell))
        finished = datetime.now(UTC)
        state = self._state
        status = INTERRUPTED if state.interrupted else (FAILED if state.failed else PASSED)
        exit_code = state.signal_exit if state.interrupted else (1 if state.failed else 0)
        counts = {
            s: sum(r.status == s for r in results) for s in (PASSED, FAILED, TIMED_OUT, SKIPPED, REFUSED, INTERRUPTED)
        }
        summary = ", ".join(f"{n} {s.replace('_', ' ')}" for s, n in counts.items() if n)
        style = "green" if status == PASSED else "red"
        # Only the runner's own words and numbers: not masked (a value such as "passed" must not hide them).
        self._say(
            self.console.note(f"{status.upper()}: {summary} in {(finished - started).total_seconds():.2f} s", style),
            masked_already=True,
        )
        return RunReport(
            runbook=self.plan.runbook.path,
            runbook_sha256=self.plan.runbook.sha256,
            status=status,
            started_at=started,
            finished_at=finished,
            selection=self.plan.selection,
            cells=tuple(results),
            variables=self.redactor.mask_json(dict(self.plan.variables)),  # operator input: masked like all content
            operator=_operator(),
            host=socket.gethostname(),
            exit_code=exit_code,
        )

    def _skip(self, position: int, total: int, cell: Cell, why: str, status: str = SKIPPED) -> CellResult:
        section, label = self._names[cell.index]
        self._say(self.console.skipped(position, total, section, label, why, status), masked_already=True)
        return CellResult(
            _masked_id(cell, label),
            label,
            section,
            cell.line,
            cell.options.when,
            status,
            source_sha256=source_sha256(cell.source),
        )

    def _skip_reason(self, cell: Cell) -> str | None:
        """Why ``cell`` is not run given what happened so far, or None when it runs."""
        state = self._state
        when = cell.options.when
        if state.quit:
            return "quit"
        if state.interrupted >= 2:
            return "interrupted twice"
        if when == "success" and state.failed:
            return "an earlier cell failed"
        if when == "failure" and not state.failed:
            return "when=failure, nothing failed"
        return None

    def _ask(self, position: int, total: int, cell: Cell) -> CellResult | None:
        """Confirmation of a .danger cell (or of every cell with --step); a result when it is not run."""
        if not (self.confirm and (self.step or cell.danger)):
            return None
        state = self._state
        self.prompting = True
        try:
            answer = self.confirm(cell, self.redactor.mask(cell.source))
        except KeyboardInterrupt:
            # Ctrl-C at a question is the operator's "no, stop". SIGTERM or a hang-up (nobody left to answer)
            # is handled as during a cell: this cell is not run, failure/always cells still are.
            answer = "quit" if state.signal_exit == 130 else "skip"
        finally:
            self.prompting = False
        if answer == "skip":
            status = REFUSED if cell.danger else SKIPPED
            if status == REFUSED:
                state.failed = True
            return self._skip(position, total, cell, "declined at the prompt" if cell.danger else "declined", status)
        if answer == "quit":
            state.quit = True
            state.failed = True
            return self._skip(position, total, cell, "quit at the prompt", REFUSED)
        return None

    def _start(self, cell: Cell) -> Started:
        if self.on_cell_start:
            self.on_cell_start(cell)
        launch = self._launches.pop(cell.index, None) or self._launch(cell)
        if launch.defines:
            self._functions.update(launch.defines)
        return self.shell.start(
            launch.script,
            cwd=self.plan.cwd(cell),  # not prepared: it resolves symlinks, which an earlier cell may change
            name=launch.name,
            snapshot=launch.stateful or self._calls_function(launch.script),
            next_cell=launch.next_cell,
            stdin_tty=launch.stdin_tty,
        )

    def _launch(self, cell: Cell) -> _Launch:
        """What starting ``cell`` takes that depends on nothing but the plan."""
        script = self.plan.script(cell)
        following = self._following.get(cell.index)
        return _Launch(
            script,
            self._names[cell.index][1],
            _STATEFUL.search(script) is not None,
            tuple(_FUNCTION_DEF.findall(script)),
            (self.plan.script(following), self._names[following.index][1]) if following is not None else None,
            self.plan.stdin_tty(cell),
        )

    def _prepare_after(self, cell: Cell) -> None:
        """Prepare the start of the cell after ``cell`` (the one sent to bash ahead is ``cell`` itself) while
        bash runs, instead of between a cell's end and the next one's start."""
        following = self._following.get(cell.index)
        if following is not None and following.index not in self._launches:
            self._launches[following.index] = self._launch(following)

    def _start_next(self, cell: Cell) -> None:
        """Send the following cell to bash now, when it will run anyway, so this cell's bookkeeping
        (result line, reports, resume state) overlaps with bash instead of adding to every cell."""
        following = self._following.get(cell.index)
        if (
            following is None
            or following.danger
            or self.step
            or self._state.interrupted
            or self._skip_reason(following) is not None
        ):
            return
        try:
            self._pending = (following, self._start(following))
        except ShellError:
            self._pending = None  # the cell's own turn tries again, and reports it

    def _one(self, position: int, total: int, cell: Cell) -> CellResult:
        state = self._state
        pending = self._pending[1] if self._pending is not None and self._pending[0] is cell else None
        self._pending = None
        if pending is None:
            reason = self._skip_reason(cell)
            if reason is not None:
                return self._skip(position, total, cell, reason)
            refused = self._ask(position, total, cell)
            if refused is not None:
                return refused

        section, label = self._names[cell.index]
        self._say(self.console.header(position, total, section, label), masked_already=True)
        if self.transcript:
            self.transcript.start(label)
        capture = Capture()
        stream = self.redactor.stream()
        started_at = datetime.now(UTC)
        t0 = time.monotonic()
        attempts = 0
        last: ShellResult | None = None
        status = FAILED
        retries = cell.options.retries
        while True:
            attempts += 1
            emit = functools.partial(self._emit, stream, capture)
            try:
                started = pending if pending is not None else self._start(cell)
                pending = None
                last = self.shell.wait(started, emit, timeout=self.plan.timeout(cell))
            except ShellError as exc:
                # The session cannot be started again (bash missing, no pty left): this cell fails, and so
                # does every later one that tries.
                last = ShellResult(exit_code=None, note=f"the shell session is gone: {exc}")
                status = FAILED
                break
            if last.interrupted:
                status = INTERRUPTED
                break
            if last.timed_out:
                status = TIMED_OUT
                break
            if last.waits_for_input:
                status = FAILED
                break
            if last.exit_code == cell.options.expect:
                status = PASSED
                break
            if attempts > retries or state.interrupted:
                status = FAILED
                break
            self._emit_final(stream, capture)
            self._say(
                self.console.note(
                    f"↻ {label}: exit {last.exit_code}; retry {attempts}/{retries} in {cell.options.interval:g} s",
                    "dim",
                ),
                masked_already=True,  # the label is masked; the rest is the runner's
            )
            if not self._sleep(cell.options.interval):
                status = INTERRUPTED
                break
            stream = self.redactor.stream()
        duration = time.monotonic() - t0
        if status != PASSED:
            state.failed = True
        # The next cell goes to bash first: the end of this one's output (what the masker still holds, the
        # transcript's flush) is handled while bash runs it. Its output waits in the pty until its turn.
        self._start_next(cell)
        self._emit_final(stream, capture)
        if last is not None and last.waits_for_input:
            self._say(
                self.console.note(
                    f"⌨ {label}: waits for terminal input, but no terminal is attached (stdin is not a TTY); stopped",
                    "red",
                )
            )
        if last is not None and last.note:
            self._say(self.console.note(f"note: {last.note}"))
        result = CellResult(
            id=_masked_id(cell, label),
            label=label,
            section=section,
            line=cell.line,
            when=cell.options.when,
            status=status,
            exit_code=last.exit_code if last else None,
            attempts=attempts,
            duration_s=duration,
            started_at=started_at,
            first_error=None if status == PASSED else capture.first_error(),
            tail=capture.last_lines(),
            source_sha256=source_sha256(cell.source),
        )
        if status == TIMED_OUT:
            note = f"⏱ {label}: timed out after {self.plan.timeout(cell):g} s"
            self._say(self.console.note(note, "red"), masked_already=True)
        # Flushed with what follows it (the next header, a skip, a question or the summary): the terminal
        # gets one write per cell.
        self._say(self.console.result(result, cell.options.expect), masked_already=True, flush=False)
        if self.on_cell_done:
            self.on_cell_done(cell, result, last)
        if self._pending is not None:
            self._prepare_after(self._pending[0])
        return result

    def _calls_function(self, source: str) -> bool:
        """Whether ``source`` names a function a cell started so far defined (calling it may change state)."""
        functions = self._functions
        return bool(functions) and any(re.search(rf"\b{re.escape(name)}\b", source) for name in functions)

    def _emit(self, stream: MaskStream, capture: Capture, data: bytes) -> None:
        # b"": the shell's idle tick (the cell has been silent for a moment): a held tail is released then,
        # so a prompt or a line without newline never waits for more output.
        masked = stream.feed(data) if data else stream.release()
        if masked:
            self._deliver(capture, masked)

    def _emit_final(self, stream: MaskStream, capture: Capture) -> None:
        masked = stream.flush()
        if masked:
            self._deliver(capture, masked)
        if capture.tail and not capture.tail.endswith(b"\n"):
            # Keep runner lines on their own line after output without a final newline.
            self.console.write(b"\n")
        if self.transcript:
            self.transcript.finish()

    def _deliver(self, capture: Capture, masked: bytes) -> None:
        self.console.write(masked)
        if self.transcript:
            self.transcript.write(masked)
        capture.add(masked)

    def _sleep(self, seconds: float) -> bool:
        """Wait between retries; False when interrupted meanwhile."""
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            if self._state.interrupted:
                return False
            time.sleep(min(0.1, max(0.0, end - time.monotonic())))
        return not self._state.interrupted


def _masked_id(cell: Cell, masked_label: str) -> str | None:
    """The cell's id as results carry it: runbook text, so masked like the label (which is the id)."""
    return masked_label if cell.id is not None else None


def _operator() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"
