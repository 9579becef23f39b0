"""Run artifacts: the live transcript, the JSON report and JUnit XML. All input here is already masked."""

from __future__ import annotations

import json
import os
import re
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO
from xml.etree import ElementTree as ET

from runbook_exec.masking import strip_controls
from runbook_exec.results import FAILED, INTERRUPTED, REFUSED, SKIPPED, TIMED_OUT, RunReport


def plain(data: bytes) -> bytes:
    """Drop colors, cursor moves, titles and other control bytes: they belong to the terminal, the
    transcript is a log. (The masker skips exactly these bytes, so dropping them joins no value back.)"""
    return strip_controls(data)


def run_dir(base: str | Path = ".runbook/runs") -> Path:
    """Create a fresh run folder named by a sub-second UTC timestamp (unique even for parallel runs)."""
    root = Path(base)
    root.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
    for n in range(1000):
        candidate = root / (stamp if n == 0 else f"{stamp}-{n}")
        try:
            candidate.mkdir()
        except FileExistsError:
            continue
        return candidate
    raise OSError(f"cannot create a run folder under {root}")


class Transcript:
    """A line-buffered, timestamped transcript: ``<UTC time> <cell> | <line>``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        # 64 KiB: a busy cell costs one write per 64 KiB instead of one per pty read; finish() flushes.
        self._fh: BinaryIO = open(path, "wb", buffering=64 << 10)  # noqa: SIM115 - kept open for the whole run
        self._partial = b""
        self._label = b""

    def start(self, label: str) -> None:
        self._label = label.encode()

    def note(self, text: str) -> None:
        """A runner message (header, result, warning) as its own line."""
        if self._partial:
            self.finish()
        stamp = self._stamp()
        for line in plain(text.rstrip("\n").encode()).split(b"\n"):
            self._fh.write(stamp + b" runner | " + line + b"\n")

    def write(self, data: bytes) -> None:
        if not data:
            return
        data = self._partial + data
        cut = data.rfind(b"\n")
        if cut < 0:
            self._partial = data
            return
        self._partial = data[cut + 1 :]
        prefix = self._stamp() + b" " + self._label + b" | "
        # One C-level replace instead of a Python loop over lines (a 200 MB cell has millions of them).
        body = plain(data[:cut])
        if b"\r" in body:  # memchr first: the pty does not add CRs (no onlcr), so most output has none
            body = body.replace(b"\r\n", b"\n")
        self._fh.writelines((prefix, body.replace(b"\n", b"\n" + prefix), b"\n"))

    def finish(self) -> None:
        """End the current cell: write an unfinished last line and flush to disk."""
        if self._partial:
            self._fh.write(self._stamp() + b" " + self._label + b" | " + plain(self._partial) + b"\n")
            self._partial = b""
        self._fh.flush()

    def close(self) -> None:
        self.finish()
        os.fsync(self._fh.fileno())
        self._fh.close()

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


def write_json(report: RunReport, path: Path) -> None:
    """Write the JSON report atomically."""
    # Indented for people when small; compact (C encoder, ~10x faster) for runs with many cells.
    indent = 2 if len(report.cells) <= 200 else None
    atomic_write(path, json.dumps(report.to_json(), ensure_ascii=False, indent=indent).encode() + b"\n")


def write_junit(report: RunReport, path: Path) -> None:
    """Write a JUnit XML file: one testsuite for the run, one testcase per planned cell."""
    suite = ET.Element(
        "testsuite",
        # One suite per target in a rollout: the name tells them apart in a CI view.
        name=f"{report.runbook} [{report.target}]" if report.target else report.runbook,
        tests=str(len(report.cells)),
        failures=str(sum(c.status in (FAILED, TIMED_OUT, REFUSED, INTERRUPTED) for c in report.cells)),
        skipped=str(sum(c.status == SKIPPED for c in report.cells)),
        time=f"{(report.finished_at - report.started_at).total_seconds():.3f}",
        timestamp=report.started_at.isoformat(),
    )
    if report.target:
        suite.set("hostname", report.engine_host or "")
        props = ET.SubElement(suite, "properties")
        ET.SubElement(props, "property", name="target", value=report.target)
        ET.SubElement(props, "property", name="engine_host", value=report.engine_host or "")
    for cell in report.cells:
        case = ET.SubElement(
            suite,
            "testcase",
            classname=cell.section or report.runbook,
            name=cell.label,
            time=f"{cell.duration_s:.3f}",
            file=report.runbook,
            line=str(cell.line),
        )
        if cell.status == SKIPPED:
            ET.SubElement(case, "skipped", message=f"when={cell.when}")
        elif cell.status != "passed":
            message = f"{cell.status}" + (f" (exit {cell.exit_code})" if cell.exit_code is not None else "")
            failure = ET.SubElement(case, "failure", message=message, type=cell.status)
            failure.text = _xml_text("\n".join(cell.tail))
    root = ET.Element("testsuites")
    root.append(suite)
    ET.indent(root)
    atomic_write(path, ET.tostring(root, encoding="utf-8", xml_declaration=True) + b"\n")


_NOT_XML = re.compile("[\ufffe\uffff]")  # what XML 1.0 forbids beyond the control bytes plain() drops


def _xml_text(text: str) -> str:
    """Output may hold terminal escapes and other control bytes that XML 1.0 forbids: drop them."""
    return _NOT_XML.sub("", plain(text.encode("utf-8", "surrogateescape")).decode("utf-8", "replace"))


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to a temporary file beside ``path``, fsync it, then rename it over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
