"""What the operator sees: headers, results and the summary. Colors only on a TTY and never with NO_COLOR.

Every byte written here has already been masked by the caller (the executor); this module only formats.
A terminal that went away (SSH dropped: EIO) or a closed pipe (``| head -3``: EPIPE) never stops a run: the
console goes quiet and the run goes on to write its transcript, reports and release record.
"""

from __future__ import annotations

import contextlib
import os
import sys
import termios
from collections.abc import Callable
from typing import BinaryIO, TextIO

from runbook_exec.records.results import FAILED, INTERRUPTED, PASSED, REFUSED, SKIPPED, TIMED_OUT, CellResult

_COLORS = {"bold": "1", "dim": "2", "red": "31", "green": "32", "yellow": "33", "cyan": "36"}
_SYMBOLS = {PASSED: "✓", FAILED: "✗", TIMED_OUT: "⏱", SKIPPED: "-", REFUSED: "✗", INTERRUPTED: "✗"}
_STATUS_COLOR = {
    PASSED: "green",
    FAILED: "red",
    TIMED_OUT: "red",
    SKIPPED: "dim",
    REFUSED: "red",
    INTERRUPTED: "yellow",
}


def use_color(stream: BinaryIO, environ: dict[str, str] | None = None) -> bool:
    env = os.environ if environ is None else environ
    if "NO_COLOR" in env or env.get("TERM") == "dumb":
        return False
    try:
        return os.isatty(stream.fileno())
    except (OSError, ValueError, AttributeError):
        return False


class Console:
    """Formats runner messages; writes bytes to one binary stream."""

    def __init__(self, stream: BinaryIO, color: bool) -> None:
        self.stream = stream
        self.color = color
        self.broken = False  # the reader went away; later output is dropped
        self._held = b""

    def paint(self, text: str, *styles: str) -> str:
        if not self.color or not styles:
            return text
        codes = ";".join(_COLORS[s] for s in styles)
        return f"\x1b[{codes}m{text}\x1b[0m"

    def write(self, data: bytes, flush: bool = True) -> None:
        """Write ``data``; ``flush=False`` holds it until the next write that flushes (one system call for a
        cell's result line and the next cell's header, even on an unbuffered stream)."""
        if not flush:
            self._held += data
            return
        if self._held:
            data, self._held = self._held + data, b""
        if data and not self.broken:
            try:
                self.stream.write(data)
                self.stream.flush()
            except (OSError, ValueError):
                self.broken = True
                silence(self.stream)

    def header(self, position: int, total: int, section: str | None, label: str) -> str:
        where = f"{section} › {label}" if section else label
        return self.paint(f"[{position}/{total}] {where}", "bold", "cyan") + "\n"

    def result(self, result: CellResult, expect: int) -> str:
        symbol = _SYMBOLS[result.status]
        words = {
            PASSED: "passed",
            FAILED: f"failed (exit {result.exit_code}" + (f", expected {expect})" if expect else ")"),
            TIMED_OUT: "timed out",
            SKIPPED: "skipped",
            REFUSED: "refused",
            INTERRUPTED: "interrupted",
        }[result.status]
        tries = f" after {result.attempts} attempts" if result.attempts > 1 else ""
        text = f"{symbol} {result.label} {words}{tries} in {result.duration_s:.2f} s"
        return self.paint(text, _STATUS_COLOR[result.status]) + "\n"

    def skipped(
        self, position: int, total: int, section: str | None, label: str, why: str, status: str = SKIPPED
    ) -> str:
        """The line for a cell that is not run: skipped, or refused at its prompt."""
        where = f"{section} › {label}" if section else label
        if status == REFUSED:
            return self.paint(f"[{position}/{total}] {where} - {_SYMBOLS[REFUSED]} refused ({why})", "red") + "\n"
        return self.paint(f"[{position}/{total}] {where} - skipped ({why})", "dim") + "\n"

    def note(self, text: str, style: str = "yellow") -> str:
        return self.paint(text, style) + "\n"


def silence(stream: BinaryIO | TextIO) -> None:
    """Point a stream whose reader went away at /dev/null.

    Data already buffered for it is then flushed into /dev/null instead of failing again at every later
    print and at interpreter exit (which would turn the exit status into 120).
    """
    with contextlib.suppress(OSError, ValueError, AttributeError):
        null = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(null, stream.fileno())
        finally:
            os.close(null)


def tell(text: str) -> None:
    """One line for the operator on stderr; a stderr that went away (hang-up, closed) is not an error."""
    try:
        print(text, file=sys.stderr, flush=True)
    except (OSError, ValueError):
        silence(sys.stderr)


GONE = "gone"  # what ask() returns when the terminal went away (hang-up): nobody is left to answer


def ask(console: Console, question: str, answers: Callable[[str], str | None], fd: int = 0) -> str | None:
    """Show ``question`` and read one line from the terminal until ``answers`` maps it to a choice.

    Input already pending (keys typed while earlier cells ran, meant for something else) is discarded
    right before the question is shown, so it can never answer it. Returns None on end of input (Ctrl-D)
    and :data:`GONE` when the terminal went away.
    """
    while True:
        # Discard first, then ask: a key pressed once the question is on the screen is an answer to it.
        with contextlib.suppress(OSError, termios.error):
            termios.tcflush(fd, termios.TCIFLUSH)
        console.write(question.encode())
        if console.broken:
            return GONE
        try:
            line = os.read(fd, 4096)
        except OSError:
            return GONE
        if not line:
            return None
        choice = answers(line.decode("utf-8", "replace").strip().lower())
        if choice is not None:
            return choice
