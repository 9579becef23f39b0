"""What the operator sees: headers, results and the summary. Colors only on a TTY and never with NO_COLOR.

Every byte written here has already been masked by the caller (the executor); this module only formats.
"""

from __future__ import annotations

import os
from typing import BinaryIO

from runbook_exec.results import FAILED, INTERRUPTED, PASSED, REFUSED, SKIPPED, TIMED_OUT, CellResult

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

    def paint(self, text: str, *styles: str) -> str:
        if not self.color or not styles:
            return text
        codes = ";".join(_COLORS[s] for s in styles)
        return f"\x1b[{codes}m{text}\x1b[0m"

    def write(self, data: bytes) -> None:
        if data:
            self.stream.write(data)
            self.stream.flush()

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

    def skipped(self, position: int, total: int, section: str | None, label: str, why: str) -> str:
        where = f"{section} › {label}" if section else label
        return self.paint(f"[{position}/{total}] {where} - skipped ({why})", "dim") + "\n"

    def note(self, text: str, style: str = "yellow") -> str:
        return self.paint(text, style) + "\n"
