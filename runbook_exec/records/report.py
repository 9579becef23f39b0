"""Run artifacts: the live transcript, the JSON report and JUnit XML. All input here is already masked."""

from __future__ import annotations

import contextlib
import json
import os
import re
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

from runbook_exec.errors import RunbookError
from runbook_exec.records.results import FAILED, INTERRUPTED, REFUSED, SKIPPED, TIMED_OUT, RunReport
from runbook_exec.secrets.masking import strip_controls

# Transcript lines: ``<STAMP> <label> | <text>``. Runner lines carry the label ``runner``; a cell's label
# is one token (no whitespace) and never ``runner``, so the final rescan can tell the runner's own lines
# and prefixes from cell output.
STAMP_LEN = len("2026-01-14T01:02:03.000000Z")
RUNNER = b"runner"
SEPARATOR = b" | "
FLUSH_S = 0.5  # transcript bytes reach the file at most this late, even when the cell then goes quiet


def plain(data: bytes) -> bytes:
    """Drop colors, cursor moves, titles and other control bytes: they belong to the terminal, the
    transcript is a log. (The masker skips exactly these bytes, so dropping them joins no value back.)"""
    return strip_controls(data)


def run_dir(base: str | Path = ".runbook/runs", target: str | None = None) -> Path:
    """Create a fresh run folder named by a sub-second UTC timestamp (unique even for parallel runs), and
    by the target's name for a run against one (``<time>-<target>``)."""
    root = Path(base)
    root.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
    suffix = f"-{target}" if target else ""
    for n in range(1000):
        candidate = root / ((stamp if n == 0 else f"{stamp}-{n}") + suffix)
        try:
            candidate.mkdir()
        except FileExistsError:
            continue
        return candidate
    raise OSError(f"cannot create a run folder under {root}")


class Transcript:
    """A line-buffered, timestamped transcript: ``<UTC time> <cell> | <line>``.

    A write that fails (disk full, the file's device gone) never stops the run: the transcript stops,
    :attr:`error` says why, and the caller reports it in one line at the end.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.error: str | None = None
        path.parent.mkdir(parents=True, exist_ok=True)
        # 64 KiB: a busy cell costs one write per 64 KiB instead of one per pty read; finish() flushes.
        self._fh: BinaryIO = open(path, "wb", buffering=64 << 10)  # noqa: SIM115 - kept open for the whole run
        self._open = False  # a line of the current cell is begun in the file (its prefix is written)
        self._cr = b""  # a CR at the end of the last write: with an LF after it, it is a line end
        self._label = b""
        self._labels: dict[str, bytes] = {}
        # A cell that prints a line and then waits (a hung deploy) must not keep that line in memory: after
        # kill -9 the transcript is what the operator and the aborted run's record read.
        self._stop = threading.Event()
        self._flusher = threading.Thread(target=self._flush_now_and_then, name="transcript-flush", daemon=True)
        self._flusher.start()

    def start(self, label: str) -> None:
        token = self._labels.get(label)
        if token is None:
            token = self._labels[label] = transcript_label(label)
        self._label = token

    def note(self, text: str) -> None:
        """A runner message (header, result, warning) as its own line."""
        if self._open or self._cr:
            self.finish()
        stamp = self._stamp()
        for line in plain(text.rstrip("\n").encode()).split(b"\n"):
            self._put(stamp, b" ", RUNNER, SEPARATOR, line, b"\n")

    def write(self, data: bytes) -> None:
        """Cell output, already masked. Written as it comes, an unfinished line too: a line never waits in
        memory (a long line without newline costs linear time and no memory; a cell that prints and then
        hangs has its last words on disk). The masker never cuts an escape sequence, so dropping control
        bytes chunk by chunk gives what dropping them from the whole would."""
        if not data:
            return
        if self._cr:
            data, self._cr = self._cr + data, b""
        if data.endswith(b"\r"):
            data, self._cr = data[:-1], b"\r"
            if not data:
                return
        body = plain(data)
        if b"\r" in body:  # memchr first: the pty does not add CRs (no onlcr), so most output has none
            body = body.replace(b"\r\n", b"\n")
        ends = body.endswith(b"\n")
        if ends:
            body = body[:-1]
        first = b"" if self._open else self._stamp() + b" " + self._label + SEPARATOR
        if b"\n" in body:
            # One C-level replace instead of a Python loop over lines (a 200 MB cell has millions of them).
            body = body.replace(b"\n", b"\n" + self._stamp() + b" " + self._label + SEPARATOR)
        self._put(first, body, b"\n" if ends else b"")
        self._open = not ends

    def finish(self) -> None:
        """End the current cell: end an unfinished last line and flush to disk."""
        if self._open or self._cr:
            self._put(b"" if self._open else self._stamp() + b" " + self._label + SEPARATOR, b"\n")
            self._open, self._cr = False, b""
        self._flush()

    def close(self) -> None:
        self._stop.set()
        self._flusher.join()
        self.finish()
        if self.error is None:
            try:
                os.fsync(self._fh.fileno())
            except OSError as exc:
                if exc.errno not in (22, 95):  # EINVAL / EOPNOTSUPP: a device or pipe, nothing to sync
                    self._fail(exc)
        with contextlib.suppress(OSError):
            self._fh.close()

    def _put(self, *parts: bytes) -> None:
        if self.error is None:
            try:
                self._fh.writelines(parts)
            except (OSError, ValueError) as exc:
                self._fail(exc)

    def _flush(self) -> None:
        if self.error is None:
            try:
                self._fh.flush()
            except (OSError, ValueError) as exc:
                self._fail(exc)

    def _fail(self, exc: Exception) -> None:
        self.error = getattr(exc, "strerror", None) or str(exc)

    def _flush_now_and_then(self) -> None:
        while not self._stop.wait(FLUSH_S):
            self._flush()

    _second = -1
    _prefix = b""

    def _stamp(self) -> bytes:
        # strftime once per second; the sub-second part is formatted by hand (it is on the hot path).
        now = time.time()
        second = int(now)
        if second != self._second:
            self._second = second
            self._prefix = datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S").encode()
        return self._prefix + b".%06dZ" % int((now - second) * 1e6)


def transcript_label(label: str) -> bytes:
    """A cell's label as it prefixes its transcript lines: one token, never the runner's own label."""
    token = re.sub(r"\s", "_", label) or "_"
    return b"cell-runner" if token.encode() == RUNNER else token.encode("utf-8", "surrogateescape")


def split_line(line: bytes) -> tuple[bytes, bytes | None]:
    """Split a transcript line into the prefix the runner wrote and the cell output after it.

    Runner lines have no cell output (None). A line not in the transcript's format is all output.
    """
    end = line.find(SEPARATOR, STAMP_LEN + 1)
    if end < 0 or line[STAMP_LEN : STAMP_LEN + 1] != b" " or b" " in line[STAMP_LEN + 1 : end]:
        return b"", line
    if line[STAMP_LEN + 1 : end] == RUNNER:
        return line, None
    return line[: end + len(SEPARATOR)], line[end + len(SEPARATOR) :]


def transcript_tail(path: Path, label: str, n: int = 20, window: int = 64 << 10) -> tuple[str, ...]:
    """The last ``n`` output lines of the cell ``label`` in the last ``window`` bytes of a transcript."""
    try:
        with open(path, "rb") as fh:
            size = fh.seek(0, os.SEEK_END)
            fh.seek(max(0, size - window))
            data = fh.read(window)
    except OSError:
        return ()
    prefix = b" " + transcript_label(label) + SEPARATOR
    lines = [ln[ln.find(prefix) + len(prefix) :] for ln in data.split(b"\n") if prefix in ln[: STAMP_LEN + len(prefix)]]
    return tuple(ln.decode("utf-8", "replace") for ln in lines[-n:])


def check_writable(path: Path, option: str) -> None:
    """Refuse (one line, before anything runs) an output path that cannot be written."""
    if path.is_dir():
        raise RunbookError(f"{path}: is a directory ({option} needs a file path)")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RunbookError(f"{path}: cannot create its folder for {option}: {exc.strerror}") from None
    if path.exists() and not path.is_file():
        return  # a device or pipe the operator chose (/dev/null): opened as is
    # A real probe: permissions, a read-only file system or a full directory table all show here.
    probe = path.with_name(f".{path.name}.{os.getpid()}.probe")
    try:
        os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        os.unlink(probe)
        if path.exists():
            os.close(os.open(path, os.O_WRONLY | os.O_APPEND))
    except OSError as exc:
        raise RunbookError(f"{path}: cannot write ({option}): {exc.strerror}") from None


INDENT_MAX = 200  # a JSON report with more cells than this is compact


def dump_json(data: Any) -> bytes:
    """The JSON report's bytes: indented for people when small, compact (C encoder, ~10x faster) for
    runs with many cells."""
    cells = data.get("cells") if isinstance(data, dict) else None
    indent = 2 if not isinstance(cells, list) or len(cells) <= INDENT_MAX else None
    return json.dumps(data, ensure_ascii=False, indent=indent).encode() + b"\n"


def report_json(report: RunReport) -> bytes:
    """``dump_json(report.to_json())``; a compact report is joined from its cells' texts, made as they ended."""
    if len(report.cells) <= INDENT_MAX:
        return dump_json(report.to_json())
    head = json.dumps(report.to_json(cells=False), ensure_ascii=False)
    cells = ", ".join([c.json_text for c in report.cells])
    return f'{head[:-1]}, "cells": [{cells}]}}\n'.encode()


def write_json(report: RunReport, path: Path) -> None:
    """Write the JSON report atomically."""
    atomic_write(path, report_json(report))


def write_junit(report: RunReport, path: Path) -> None:
    """Write a JUnit XML file: one testsuite for the run, one testcase per planned cell."""
    atomic_write(path, junit_xml(report))


def junit_xml(report: RunReport) -> bytes:
    """The JUnit document, written out directly (byte for byte what ``ElementTree`` with ``indent`` would
    write, at a fraction of its cost per testcase: a run of thousands of cells writes it at its end)."""
    # One suite per target in a rollout: the name tells them apart in a CI view.
    name = f"{report.runbook} [{report.target}]" if report.target else report.runbook
    failures = sum(c.status in (FAILED, TIMED_OUT, REFUSED, INTERRUPTED) for c in report.cells)
    skipped = sum(c.status == SKIPPED for c in report.cells)
    seconds = (report.finished_at - report.started_at).total_seconds()
    out = [
        "<?xml version='1.0' encoding='utf-8'?>\n<testsuites>",
        f'\n  <testsuite name="{_attr(name)}" tests="{len(report.cells)}" failures="{failures}"'
        f' skipped="{skipped}" time="{seconds:.3f}" timestamp="{_attr(report.started_at.isoformat())}"',
    ]
    if report.target:
        host = _attr(report.engine_host or "")
        out.append(
            f' hostname="{host}">\n    <properties>\n      <property name="target" value="{_attr(report.target)}"'
            f' />\n      <property name="engine_host" value="{host}" />\n    </properties>'
        )
    elif report.cells:
        out.append(">")
    else:
        out.append(" />")
    runbook = _attr(report.runbook)
    for cell in report.cells:
        case = (
            f'\n    <testcase classname="{_attr(cell.section) if cell.section else runbook}"'
            f' name="{_attr(cell.label)}" time="{cell.duration_s:.3f}" file="{runbook}" line="{cell.line}"'
        )
        if cell.status == SKIPPED:
            case += f'>\n      <skipped message="when={_attr(cell.when)}" />\n    </testcase>'
        elif cell.status == REFUSED:
            case += (
                f'>\n      <failure message="refused at the confirmation prompt (not run)" type="{REFUSED}" />'
                "\n    </testcase>"
            )
        elif cell.status != "passed":
            message = f"{cell.status}" + (f" (exit {cell.exit_code})" if cell.exit_code is not None else "")
            text = _xml_text("\n".join(cell.tail))
            body = f">{_cdata(text)}</failure>" if text else " />"
            case += f'>\n      <failure message="{_attr(message)}" type="{_attr(cell.status)}"{body}\n    </testcase>'
        else:
            case += " />"
        out.append(case)
    if report.target or report.cells:
        out.append("\n  </testsuite>")
    out.append("\n</testsuites>\n")
    return "".join(out).encode("utf-8", "xmlcharrefreplace")


_ATTR_ESCAPES = str.maketrans(
    {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "\r": "&#13;", "\n": "&#10;", "\t": "&#09;"}
)
_ATTR_SPECIAL = re.compile('[&<>"\r\n\t]')
_CDATA_ESCAPES = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;"})


def _attr(text: str) -> str:
    # A search first: most values need no escape, and translate() costs ~4x a search.
    return text.translate(_ATTR_ESCAPES) if _ATTR_SPECIAL.search(text) else text


def _cdata(text: str) -> str:
    return text.translate(_CDATA_ESCAPES)


_NOT_XML = re.compile("[\ufffe\uffff]")  # what XML 1.0 forbids beyond the control bytes plain() drops


def _xml_text(text: str) -> str:
    """Output may hold terminal escapes and other control bytes that XML 1.0 forbids: drop them."""
    return _NOT_XML.sub("", plain(text.encode("utf-8", "surrogateescape")).decode("utf-8", "replace"))


def atomic_write(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` in one step (a reader sees the old file or the new one)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
