"""The final rescan: fail closed, look for any form of any secret in every artifact a run wrote.

Only what came from cells, the runbook text and the environment is searched and redacted; what the runner
writes itself (timestamps, statuses, durations, counts, ids, operator, host, the paths it generated) is not,
so a value such as ``root``, ``2026`` or ``passed`` in the env file can neither raise a false alarm nor
corrupt an artifact. Redaction happens inside the parsed document (JSON string values, XML attribute values
and text, the output part of each transcript line): every artifact stays valid. The resume state file is
never scanned: it is the one file that holds values in clear (mode 0600, deleted when the run passes).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, BinaryIO
from xml.etree import ElementTree as ET

from runbook_exec.records.report import atomic_write, dump_json, split_line
from runbook_exec.records.results import CELL_FIELDS_OWN, RUN_FIELDS_OWN
from runbook_exec.secrets.masking import MaskStream, Redactor

_CHUNK = 256 << 10  # a few transient copies of it (window, view) stay small next to the process
_OVERLAP = 64 << 10  # longer than any encoded form of any secret
# JUnit attributes the runner writes itself: counts, times, line numbers, status words.
_JUNIT_OWN = frozenset(
    {"tests", "failures", "errors", "skipped", "time", "timestamp", "line", "type", "message", "hostname"}
)

Scanner = Callable[[Redactor, Path, bool], set[str]]


def rescan(redactor: Redactor, artifacts: Mapping[str, Path]) -> list[str]:
    """Scan the transcript, JSON report and JUnit file; redact what is found and name its keys (never a
    value). Returns one line per artifact that held a secret form."""
    scanners: dict[str, Scanner] = {"transcript": _transcript, "report": _report, "junit": _junit}
    found: list[str] = []
    for name, scanner in scanners.items():
        path = artifacts.get(name)
        # Only regular files: a device or pipe chosen as a path (/dev/null) is not read back.
        if path is None or not path.is_file():
            continue
        keys = scanner(redactor, path, False)
        if keys:
            scanner(redactor, path, True)
            found.append(f"{path}: contained a form of {', '.join(sorted(keys))}; redacted")
    return found


# -- transcript -------------------------------------------------------------------------------------------


def _transcript(redactor: Redactor, path: Path, redact: bool) -> set[str]:
    """Scan (or redact) the output part of every cell line; prefixes and runner lines are the runner's.

    Each line is judged on its own (a prefix sits between two lines in the file). Lines are searched in
    batches of about ``_CHUNK`` bytes and one by one only when a batch has a hit; a line longer than that
    (50 MB without a newline) is searched in overlapping windows.
    """
    if redact:
        _redact_transcript(redactor, path)
        return set()
    found = _transcript_by_blocks(redactor, path)
    if found is not None:
        return found
    keys: set[str] = set()
    batch: list[bytes] = []
    size = 0
    tail = b""
    with open(path, "rb") as src:
        for _head, body, newline, first in _pieces(src):
            if body is None:
                continue
            if first and newline:
                batch.append(body)
            else:  # a long line: this window overlaps the one before
                window = body if first else tail + body
                tail = window[-_OVERLAP:]
                batch.append(window)
            size += len(batch[-1])
            if size >= _CHUNK:
                keys.update(_batch_leaks(redactor, batch))
                batch, size = [], 0
    keys.update(_batch_leaks(redactor, batch))
    return keys


# The runner's part of a transcript line (see report.split_line): a runner line as a whole, or the
# timestamp-and-label prefix of a cell line.
_RUNNER_PART = re.compile(rb"(?m)^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z (?:runner \| [^\n]*\n?|[^ \n]+ \| )")


def _transcript_by_blocks(redactor: Redactor, path: Path) -> set[str] | None:
    """Keys in the cell output of a transcript, searched ``_CHUNK`` bytes of whole lines at a time.

    A block is searched as it is first (the usual case: nothing, at the speed of the search); on a hit,
    again with the runner's parts cut out; and only then line by line. None when a line is longer than a
    few blocks (the caller then reads it in windows).
    """
    keys: set[str] = set()
    carry = b""
    strip_first = False
    with open(path, "rb") as src:
        while True:
            chunk = src.read(_CHUNK)
            data = carry + chunk
            if not data:
                return keys
            cut = len(data) if not chunk else data.rfind(b"\n") + 1
            if cut == 0:
                if len(data) > 4 * _CHUNK:
                    return None
                carry = data
                continue
            block, carry = data[:cut], data[cut:]
            if strip_first:
                hit = bool(redactor.leaks(_RUNNER_PART.sub(b"", block)))
            elif redactor.leaks(block):
                hit = bool(redactor.leaks(_RUNNER_PART.sub(b"", block)))
                # The runner's own parts hit (a value such as 2026 in every timestamp): cut them out first
                # from now on, rather than search every block twice.
                strip_first = not hit
            else:
                hit = False
            if hit:
                for line in block.split(b"\n"):
                    body = split_line(line)[1]
                    if body:
                        keys.update(redactor.leaks(body))
            if not chunk:
                return keys


def _batch_leaks(redactor: Redactor, bodies: list[bytes]) -> set[str]:
    """Keys found in any one of ``bodies``, each judged on its own: one search over all of them joined,
    and one per body only when that finds something (a hit may also straddle two bodies)."""
    if not bodies or not redactor.leaks(b"\n".join(bodies)):
        return set()
    return {key for body in bodies for key in redactor.leaks(body)}


def _content_leaks(redactor: Redactor, content: Any, texts: Callable[[], list[str]]) -> set[str]:
    """Keys found in any string of ``content`` (a JSON-like value), each string judged on its own.

    The usual case costs one C-level ``json.dumps`` and one search: when the encoded content has no
    escape (every string stands in it as it is, between quotes) and nothing is found, nothing is there.
    Otherwise the strings (``texts()``) are searched one by one.
    """
    blob = json.dumps(content, ensure_ascii=False).encode("utf-8", "surrogatepass")
    if b"\\" not in blob and not redactor.leaks(blob):
        return set()
    return _text_leaks(redactor, texts())


def _text_leaks(redactor: Redactor, texts: list[str]) -> set[str]:
    keys: set[str] = set()
    batch: list[bytes] = []
    size = 0
    for text in texts:
        batch.append(text.encode("utf-8", "surrogatepass"))
        size += len(batch[-1])
        if size >= _CHUNK:
            keys |= _batch_leaks(redactor, batch)
            batch, size = [], 0
    return keys | _batch_leaks(redactor, batch)


def _redact_transcript(redactor: Redactor, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.redacting")
    stream: MaskStream | None = None
    with open(path, "rb") as src, open(tmp, "wb") as dst:
        for head, body, newline, first in _pieces(src):
            if body is None:
                dst.write(head)
                continue
            if first or stream is None:
                stream = redactor.stream()
            dst.write(head + stream.feed(body))
            if newline:
                dst.write(stream.flush() + newline)
                stream = None
        if stream is not None:
            dst.write(stream.flush())
    os.replace(tmp, path)


def _pieces(src: BinaryIO) -> Iterator[tuple[bytes, bytes | None, bytes, bool]]:
    """``(head, output, newline, first)`` for each piece (at most ``_CHUNK`` bytes) of each line.

    For cell output ``head`` is the runner's prefix (first piece only) and ``output`` the cell's bytes
    without the newline; for a runner line ``output`` is None and ``head`` is the whole piece.
    """
    first, runner_line = True, False
    while piece := src.readline(_CHUNK):
        newline = b"\n" if piece.endswith(b"\n") else b""
        content = piece[: len(piece) - len(newline)]
        if first:
            head, body = split_line(content)
            runner_line = body is None
        else:
            head, body = b"", None if runner_line else content
        if body is None:
            yield piece, None, b"", first
        else:
            yield head, body, newline, first
        first = bool(newline)


# -- JSON report ------------------------------------------------------------------------------------------


def _report(redactor: Redactor, path: Path, redact: bool) -> set[str]:
    try:
        data = json.loads(path.read_bytes())
    except ValueError:
        return _raw(redactor, path, redact)
    if not isinstance(data, dict):
        return _raw(redactor, path, redact)
    parts = _json_parts(data)
    keys = _content_leaks(redactor, parts, lambda: [text for part in parts for text in _strings(part)])
    if redact:
        for holder, key in _json_content(data):
            holder[key] = redactor.mask_json(holder[key])
        atomic_write(path, dump_json(data))
    return keys


def _json_content(data: dict[str, Any]) -> Iterator[tuple[dict[str, Any], str]]:
    """(container, key) of every report field that came from cells, the runbook or the environment."""
    for key, value in data.items():
        if key == "cells" and isinstance(value, list):
            for cell in value:
                if isinstance(cell, dict):
                    yield from ((cell, k) for k in cell if k not in CELL_FIELDS_OWN)
        elif key not in RUN_FIELDS_OWN:
            yield data, key


def _json_parts(data: dict[str, Any]) -> list[Any]:
    """The values of :func:`_json_content`, in its order, gathered without a generator step per value."""
    parts: list[Any] = []
    for key, value in data.items():
        if key == "cells" and isinstance(value, list):
            own = CELL_FIELDS_OWN
            parts += [v for cell in value if isinstance(cell, dict) for k, v in cell.items() if k not in own]
        elif key not in RUN_FIELDS_OWN:
            parts.append(value)
    return parts


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _strings(k)
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)


# -- JUnit ------------------------------------------------------------------------------------------------


def _junit(redactor: Redactor, path: Path, redact: bool) -> set[str]:
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError:
        return _raw(redactor, path, redact)
    texts = _junit_texts(root)
    keys = _content_leaks(redactor, texts, lambda: texts)
    if redact:
        for element, name, content, own in _junit_content(root):
            if name is None:
                element.text = redactor.mask(content)
            else:
                element.set(name, redactor.mask(content) + own)
        atomic_write(path, ET.tostring(root, encoding="utf-8", xml_declaration=True) + b"\n")
    return keys


def _junit_content(root: ET.Element) -> Iterator[tuple[ET.Element, str | None, str, str]]:
    """``(element, attribute or None for the text, content, the runner's own suffix)`` of every JUnit value
    that came from cells, the runbook or the environment.

    A run against a target names it in ``<property name="target">`` (the runner's own, like the report's
    ``target``) and at the end of its suite's name (``book.md [target]``): that part is left out.
    """
    for element in root.iter():
        yield from _element_content(element)


def _junit_texts(root: ET.Element) -> list[str]:
    """The contents of :func:`_junit_content`, in its order; a testcase's (nearly every element) gathered
    without a generator step per value."""
    texts: list[str] = []
    for element in root.iter():
        if element.tag == "testcase":
            texts += [value for name, value in element.attrib.items() if name not in _JUNIT_OWN]
            if element.text:
                texts.append(element.text)
        else:
            texts += [content for _element, _name, content, _own in _element_content(element)]
    return texts


def _element_content(element: ET.Element) -> Iterator[tuple[ET.Element, str | None, str, str]]:
    """:func:`_junit_content` of one element."""
    if element.tag == "property" and element.get("name") in RUN_FIELDS_OWN:
        return
    own = ""
    if element.tag == "testsuite":
        target = element.find("properties/property[@name='target']")
        suffix = f" [{target.get('value')}]" if target is not None else ""
        own = suffix if suffix and element.get("name", "").endswith(suffix) else ""
    for name, value in element.attrib.items():
        if name not in _JUNIT_OWN:
            suffix = own if name == "name" else ""
            yield element, name, value[: len(value) - len(suffix)], suffix
    if element.text:
        yield element, None, element.text, ""


# -- anything else ----------------------------------------------------------------------------------------


def _raw(redactor: Redactor, path: Path, redact: bool) -> set[str]:
    """A file that is not in its expected format: every byte is searched (fail closed)."""
    keys: set[str] = set()
    tail = b""
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            window = tail + chunk
            keys.update(redactor.leaks(window))
            tail = window[-_OVERLAP:]
    if redact and keys:
        stream = redactor.stream()
        tmp = path.with_name(f".{path.name}.redacting")
        with open(path, "rb") as src, open(tmp, "wb") as dst:
            while chunk := src.read(_CHUNK):
                dst.write(stream.feed(chunk))
            dst.write(stream.flush())
        os.replace(tmp, path)
    return keys
