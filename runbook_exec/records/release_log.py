"""release.log: render one record per run from a jinja2 template, append it atomically, read records back.

A record is framed by two machine lines written by this module, whatever the template says::

    === runbook-exec record <run-id> begin ===
    meta: {"run_id": ..., "status": "passed", "vars": {"TAG": ...}, "deployed": "2026.01.14", ...}
    <the rendered template, for people>
    === runbook-exec record <run-id> end sha256=<hex of the bytes between the two lines> ===

Appends take an exclusive lock (``<log>.lock``), write the whole record with one ``write`` on an
``O_APPEND`` descriptor and ``fsync`` it, so concurrent writers never interleave and earlier bytes are
never touched. A record whose end line is missing or whose checksum does not match (a writer killed
mid-write, a disk filled up) is skipped by the reader instead of making the whole log unreadable.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from runbook_exec.doc.document import Runbook
from runbook_exec.errors import RunbookError
from runbook_exec.records.results import (
    ABORTED,
    FAILED,
    INTERRUPTED,
    PASSED,
    REFUSED,
    SKIPPED,
    TIMED_OUT,
    CellResult,
    RunReport,
)
from runbook_exec.secrets.masking import strip_controls

# Korea has had no daylight saving time since 1988; a fixed offset avoids needing tzdata on Windows.
KST = timezone(timedelta(hours=9), "KST")
BEGIN = "=== runbook-exec record {run_id} begin ==="
END = "=== runbook-exec record {run_id} end sha256={digest} ==="
_BEGIN_RE = re.compile(r"^=== runbook-exec record (\S+) begin ===$")
_END_RE = re.compile(r"^=== runbook-exec record (\S+) end sha256=([0-9a-f]{64}) ===$")
_META_PREFIX = "meta: "
# Cell tags (Runme's ``tag=`` key) that say what a passed cell put into service.
DEPLOY_TAG, ROLLBACK_TAG = "deploy", "rollback"
_BAD = (FAILED, TIMED_OUT, REFUSED, INTERRUPTED)
_TIME = "%Y-%m-%d %H:%M:%S"

Mask = Callable[[str], str]


@dataclass(frozen=True)
class Record:
    """One intact record read back from a release.log."""

    run_id: str
    line: int  # 1-based line of the begin line
    meta: Mapping[str, Any]
    body: str  # the human part (the rendered template)

    @property
    def status(self) -> str:
        return str(self.meta.get("status", ""))

    @property
    def variables(self) -> Mapping[str, str]:
        found = self.meta.get("vars", {})
        return found if isinstance(found, dict) else {}

    @property
    def target(self) -> str | None:
        """The ``--target`` the run was made against; None for a run without one."""
        value = self.meta.get("target")
        return value if isinstance(value, str) and value else None

    @property
    def deployed(self) -> str | None:
        """The TAG this run put into service (rollbacks: TAG_PREV), or None."""
        value = self.meta.get("deployed")
        return value if isinstance(value, str) and value else None


# -- rendering ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rendered:
    """A rendered record and every string in it that came from cells, the runbook or the environment
    (masked): the parts a leak check must look at. The rest is the runner's own (times, statuses, ids,
    operator, host, paths it generated) and is never masked."""

    text: str
    content: tuple[str, ...]


class _Content:
    """Masks a value that came from cells, the runbook or the environment, and remembers the result."""

    def __init__(self, mask: Mask | None) -> None:
        self._mask = mask
        self.seen: list[str] = []

    def __call__(self, value: str) -> str:
        out = self._mask(value) if self._mask else value
        self.seen.append(out)
        return out

    def opt(self, value: str | None) -> str | None:
        return None if value is None else self(value)

    def deep(self, value: Any) -> Any:
        if isinstance(value, str):
            return self(value)
        if isinstance(value, dict):
            return {self.deep(k): self.deep(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.deep(v) for v in value]
        return value


def render(
    template_path: str | Path,
    report: RunReport,
    book: Runbook,
    extra: Mapping[str, Any] | None = None,
    *,
    mask: Mask | None = None,
) -> str:
    """Render one complete record (begin line, meta, template body, end line) for ``report``.

    ``extra`` may carry ``rollback_possible`` (bool: TAG_PREV is known and its images exist) and
    ``run_id``; other keys are passed to the template as ``extra``. ``mask`` is applied to every value
    that came from cells, the runbook or the environment (a second guard: the report is already masked),
    never to the runner's own fields.
    """
    return render_record(template_path, report, book, extra, mask=mask).text


def render_record(
    template_path: str | Path,
    report: RunReport,
    book: Runbook,
    extra: Mapping[str, Any] | None = None,
    *,
    mask: Mask | None = None,
) -> Rendered:
    """:func:`render`, with the masked content strings for the caller's leak check."""
    extra = dict(extra or {})
    path = Path(template_path)
    try:
        source = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RunbookError(f"{template_path}: release record template not found") from None
    except OSError as exc:
        raise RunbookError(f"{template_path}: cannot read release record template: {exc.strerror}") from None
    import jinja2  # noqa: PLC0415 - loaded only for a record: the largest import, 7 MiB

    env = jinja2.Environment(
        undefined=jinja2.StrictUndefined, keep_trailing_newline=True, trim_blocks=True, lstrip_blocks=True
    )
    try:
        template = env.from_string(source)
    except jinja2.TemplateSyntaxError as exc:
        raise RunbookError(f"{template_path}:{exc.lineno}: template syntax: {exc.message}") from None
    content = _Content(mask)
    context = build_context(report, book, extra, content)
    try:
        body = template.render(context)
    except jinja2.UndefinedError as exc:
        raise RunbookError(f"{template_path}: {exc.message}") from None
    except jinja2.TemplateError as exc:
        raise RunbookError(f"{template_path}: template error: {exc}") from None
    meta = _meta(context)
    return Rendered(seal(_frame(context["run_id"], meta, body)), tuple(content.seen))


def build_context(
    report: RunReport, book: Runbook, extra: Mapping[str, Any], content: Mask | None = None
) -> dict[str, Any]:
    """Everything a template can use. ``content`` masks each value that came from cells, the runbook or
    the environment; the runner's own fields (times, statuses, counts, ids, operator, host, paths it
    generated) are passed as they are."""
    m = content if isinstance(content, _Content) else _Content(content)
    raw_tag_prev = report.variables.get("TAG_PREV") or None
    variables = m.deep(dict(report.variables))
    tag, tag_prev = variables.get("TAG"), variables.get("TAG_PREV") or None
    cells = [_cell_json(c, book, m) for c in report.cells]
    by_id = {c.id: c for c in report.cells if c.id}
    kind, deployed = _deployment(report, book, report.variables.get("TAG"), raw_tag_prev)
    deployed = m.opt(deployed)
    failed = report.failed_cell
    sections: list[str] = []
    for c in report.cells:
        if c.status != SKIPPED and c.section and c.section not in sections:
            sections.append(c.section)
    sections = [m(s) for s in sections]

    def observed(*ids: str) -> str:
        """``passed`` when one of the named cells (alternatives proving one item) passed, ``failed`` when
        one ran and failed and none passed, else ``not run``."""
        found = [r for r in (by_id.get(i) for i in ids) if r is not None]
        if any(r.status == PASSED for r in found):
            return "passed"
        if any(r.status in _BAD for r in found):
            return "failed"
        return "not run"

    rollback = _rollback(tag_prev, extra.get("rollback_possible"))
    return {
        "run_id": str(extra.get("run_id") or run_id(report)),
        "status": report.status,
        "succeeded": report.status == PASSED,
        "exit_code": report.exit_code,
        "kind": kind,
        "deployed": deployed,
        "TAG": tag,
        "TAG_PREV": tag_prev,
        "variables": variables,
        "started_utc": _stamp(report.started_at, UTC),
        "started_kst": _stamp(report.started_at, KST),
        "finished_utc": _stamp(report.finished_at, UTC),
        "finished_kst": _stamp(report.finished_at, KST),
        "duration_s": round((report.finished_at - report.started_at).total_seconds(), 3),
        "operator": report.operator or "unknown",
        "host": report.host or "unknown",
        # The runner's own, like operator and host: the target it resolved, the name its engine gave.
        "target": report.target,
        "engine_host": report.engine_host,
        "runbook": m(report.runbook),
        "runbook_sha256": report.runbook_sha256,
        "selection": [m(s) for s in report.selection],
        "sections": sections,
        "cells": cells,
        "counts": _counts(report.cells),
        "failure": _failure(failed, report, book, m) if failed else None,
        "rollback": rollback,
        "run_dir": report.run_dir,
        "transcript": report.transcript,
        "observed": observed,
        "extra": m.deep({k: v for k, v in extra.items() if k not in ("rollback_possible", "run_id", "plan")}),
    }


def run_id(report: RunReport) -> str:
    """A unique, sortable id: the start time (UTC, microseconds) and a random suffix."""
    start = report.started_at if report.started_at.tzinfo else report.started_at.replace(tzinfo=UTC)
    return f"{start.astimezone(UTC).strftime('%Y%m%dT%H%M%S.%fZ')}-{secrets.token_hex(3)}"


def _stamp(moment: datetime, zone: timezone) -> str:
    aware = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return f"{aware.astimezone(zone).strftime(_TIME)} {zone.tzname(None)}"


def _cell_json(c: CellResult, book: Runbook, m: _Content) -> dict[str, Any]:
    return {
        "id": m.opt(c.id),
        "label": m(c.label),
        "section": m.opt(c.section),
        "line": c.line,
        "when": c.when,
        "status": c.status,
        "exit_code": c.exit_code,
        "attempts": c.attempts,
        "duration_s": round(c.duration_s, 3),
        "tags": [m(t) for t in _tags(c, book)],
    }


def _tags(c: CellResult, book: Runbook) -> tuple[str, ...]:
    # By line: a result's id is masked like all runbook text, so it may not equal the cell's own id.
    for cell in book.cells:
        if cell.line == c.line and cell.executable:
            return cell.options.tags
    return ()


def _counts(cells: Sequence[CellResult]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for c in cells:
        counts[c.status] = counts.get(c.status, 0) + 1
    return counts


def _deployment(report: RunReport, book: Runbook, tag: str | None, tag_prev: str | None) -> tuple[str, str | None]:
    """What kind of run this was and which TAG it left in service (None when it changed nothing).

    A runbook that tags cells ``tag=deploy`` / ``tag=rollback`` says which cells put a version into
    service; a run that passed without running one of them (a preflight alone, a smoke test) deployed
    nothing. A runbook without such tags counts every passed run as deploying ``TAG``.
    """
    tagged = any(DEPLOY_TAG in c.options.tags or ROLLBACK_TAG in c.options.tags for c in book.cells if c.executable)
    ran = {t for c in report.cells if c.status not in (SKIPPED, REFUSED) for t in _tags(c, book)}
    kind = "rollback" if ROLLBACK_TAG in ran else "deploy" if DEPLOY_TAG in ran else "run"
    if report.status != PASSED:
        return kind, None
    if not tagged:
        return "deploy", tag
    if kind == "rollback":
        return kind, tag_prev
    return kind, tag if kind == "deploy" else None


def _failure(cell: CellResult, report: RunReport, book: Runbook, m: _Content) -> dict[str, Any]:
    """The Minimum Failure Record: what failed, how, the evidence, and where the whole log is."""
    if cell.first_error:
        first_error = m(plain(cell.first_error))
    elif report.status == ABORTED and cell.status == INTERRUPTED:
        first_error = "(the runner stopped while this cell was running: killed, or the machine stopped)"
    elif cell.status == REFUSED:
        first_error = "(refused at the confirmation prompt: not run)"
    else:
        first_error = "(no line looked like an error; see the last lines)"
    return {
        "step": m(cell.label),
        "section": m.opt(cell.section),
        "line": cell.line,
        "location": f"{m(book.path)}:{cell.line}",
        "status": cell.status,
        "exit_code": cell.exit_code,
        "attempts": cell.attempts,
        "first_error": first_error,
        "tail": [m(plain(line)) for line in cell.tail[-20:]],
        "log": report.transcript or report.run_dir or "(no transcript was written)",
        "run_dir": report.run_dir,
    }


def plain(line: str) -> str:
    """``line`` without terminal control sequences, control bytes, carriage returns and trailing blanks:
    a record is plain text for people and parsers. (What is dropped is what the masker skips, so dropping
    it joins no masked value back together.)"""
    data = strip_controls(line.encode("utf-8", "surrogatepass")).replace(b"\r", b"")
    return data.decode("utf-8", "surrogatepass").rstrip()


def _rollback(tag_prev: str | None, possible: Any) -> dict[str, Any]:
    if not tag_prev:
        return {"possible": False, "reason": "TAG_PREV unknown (no earlier successful deployment in release.log)"}
    if possible is True:
        return {"possible": True, "reason": f"images of TAG_PREV={tag_prev} exist"}
    if possible is False:
        return {"possible": False, "reason": f"images of TAG_PREV={tag_prev} are missing"}
    return {"possible": None, "reason": f"TAG_PREV={tag_prev} is known; its images were not checked"}


def _meta(context: Mapping[str, Any]) -> dict[str, Any]:
    targeted = {"target": context["target"], "engine_host": context["engine_host"]} if context["target"] else {}
    return {
        **targeted,
        "run_id": context["run_id"],
        "status": context["status"],
        "exit_code": context["exit_code"],
        "kind": context["kind"],
        "deployed": context["deployed"],
        "vars": context["variables"],
        "runbook": context["runbook"],
        "runbook_sha256": context["runbook_sha256"],
        "started_utc": context["started_utc"],
        "finished_utc": context["finished_utc"],
        "selection": context["selection"],
        "failed_step": context["failure"]["step"] if context["failure"] else None,
        # For readers of the log (the site's release history) that must not parse the template's text.
        "operator": context["operator"],
        "host": context["host"],
    }


# -- framing --------------------------------------------------------------------------------------------


def _frame(rid: str, meta: Mapping[str, Any], body: str) -> str:
    lines = [BEGIN.format(run_id=rid), _META_PREFIX + json.dumps(meta, ensure_ascii=False, sort_keys=True)]
    for line in body.rstrip("\n").split("\n"):
        # Output lines quoted in the body can never be mistaken for a frame line.
        lines.append(" " + line if line.startswith("===") else line)
    lines.append(END.format(run_id=rid, digest="0" * 64))
    return "\n".join(lines) + "\n"


def seal(text: str) -> str:
    """Recompute the end line's checksum of a framed record (after masking changed its bytes)."""
    lines = text.rstrip("\n").split("\n")
    begin = _BEGIN_RE.match(lines[0]) if lines else None
    if begin is None or len(lines) < 3 or _END_RE.match(lines[-1]) is None:
        raise RunbookError("release.log: not a framed record (begin line, meta, body, end line)")
    inner = "\n".join(lines[1:-1]) + "\n"
    digest = hashlib.sha256(inner.encode("utf-8", "surrogateescape")).hexdigest()
    return "\n".join([lines[0], *lines[1:-1], END.format(run_id=begin.group(1), digest=digest)]) + "\n"


# -- appending ------------------------------------------------------------------------------------------


def append(log_path: str | Path, text: str, *, mask: Mask | None = None, lock_timeout: float = 60.0) -> None:
    """Append one record with a single write under an exclusive lock, then fsync.

    Refuses (:class:`RunbookError`) when the log's directory does not exist: a typo in the path must not
    silently create a log nobody reads. A framed record is re-sealed after ``mask``.
    """
    path = Path(log_path)
    if not path.parent.is_dir():
        raise RunbookError(f"{log_path}: directory {path.parent} does not exist; release record not written")
    if mask is not None:
        text = mask(text)
    if _BEGIN_RE.match(text.split("\n", 1)[0]):
        text = seal(text)
    if not text.endswith("\n"):
        text += "\n"
    data = text.encode("utf-8", "surrogateescape")
    try:
        with _Lock(Path(str(path) + ".lock"), lock_timeout):
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_BINARY", 0), 0o644)
            try:
                size = os.fstat(fd).st_size
                if size and _last_byte(path, size) != b"\n":
                    # A torn record (writer killed mid-write) must not swallow this one's begin line.
                    data = b"\n" + data
                _write_all(fd, data)
                os.fsync(fd)
            finally:
                os.close(fd)
    except OSError as exc:
        raise RunbookError(f"{log_path}: cannot append the release record: {exc.strerror or exc}") from None


def check_writable(log_path: str | Path) -> None:
    """Refuse, before anything runs, a release log that could not take this run's record."""
    path = Path(log_path)
    if not path.parent.is_dir():
        raise RunbookError(f"{log_path}: directory {path.parent} does not exist; no release record could be written")
    if path.is_dir():
        raise RunbookError(f"{log_path}: is a directory, not a release log")
    try:
        # The lock file is created next to the log by every append anyway; opening the log for append
        # writes nothing and shows permissions, a read-only file system or an immutable file.
        os.close(os.open(Path(str(path) + ".lock"), os.O_RDWR | os.O_CREAT, 0o644))
        if path.exists():
            os.close(os.open(path, os.O_WRONLY | os.O_APPEND))
    except OSError as exc:
        raise RunbookError(f"{log_path}: cannot write the release log: {exc.strerror}") from None


def _last_byte(path: Path, size: int) -> bytes:
    with path.open("rb") as f:
        f.seek(size - 1)
        return f.read(1)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


class _Lock:
    """An exclusive advisory lock on a side file: fcntl on POSIX, msvcrt on Windows."""

    def __init__(self, path: Path, timeout: float) -> None:
        self.path, self.timeout = path, timeout
        self.fd = -1

    def __enter__(self) -> _Lock:
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                _lock(self.fd)
                return self
            except (BlockingIOError, PermissionError, OSError):
                if time.monotonic() > deadline:
                    os.close(self.fd)
                    raise RunbookError(f"{self.path}: could not lock within {self.timeout:g}s") from None
                time.sleep(0.01)

    def __exit__(self, *exc: object) -> None:
        try:
            _unlock(self.fd)
        finally:
            os.close(self.fd)


if sys.platform == "win32":  # pragma: no cover - exercised on Windows only
    import msvcrt

    def _lock(fd: int) -> None:
        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)

    def _unlock(fd: int) -> None:
        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)

else:
    import fcntl

    def _lock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)

    def _unlock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_UN)


# -- reading --------------------------------------------------------------------------------------------


def records(log_path: str | Path) -> list[Record]:
    """Every intact record in the log, oldest first. Torn or altered records are skipped, not fatal."""
    path = Path(log_path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise RunbookError(f"{log_path}: cannot read release log: {exc.strerror}") from None
    return list(_parse(data.decode("utf-8", "surrogateescape").split("\n")))


def _parse(lines: Iterable[str]) -> Iterable[Record]:
    current: tuple[str, int] | None = None
    inner: list[str] = []
    for number, line in enumerate(lines, 1):
        begin = _BEGIN_RE.match(line)
        if begin:
            # A begin line while a record is open means the open one was torn: drop it.
            current, inner = (begin.group(1), number), []
            continue
        if current is None:
            continue
        end = _END_RE.match(line)
        if end is None:
            inner.append(line)
            continue
        rid, start = current
        current = None
        text = "\n".join(inner) + "\n"
        if end.group(1) != rid or hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest() != end.group(2):
            continue
        record = _record(rid, start, inner)
        if record is not None:
            yield record


def _record(rid: str, line: int, inner: list[str]) -> Record | None:
    if not inner or not inner[0].startswith(_META_PREFIX):
        return None
    try:
        meta = json.loads(inner[0][len(_META_PREFIX) :])
    except json.JSONDecodeError:
        return None
    if not isinstance(meta, dict):
        return None
    return Record(run_id=rid, line=line, meta=meta, body="\n".join(inner[1:]))


def last_successful(
    log_path: str | Path, var: str = "TAG", exclude: str | None = None, target: str | None = None
) -> str | None:
    """The value of ``var`` in the last passed record that deployed something (``TAG``: what it left running).

    Only records of ``target`` count (``None``: records of runs without ``--target``): what one engine runs
    says nothing about another, so each target rolls back to its own previous TAG.

    For ``TAG`` this is the record's ``deployed`` value, so a passed rollback makes its TAG_PREV the
    current one and a passed preflight-only run changes nothing. ``exclude`` skips records holding that
    value: the previous TAG of a run with TAG=B is the last one that was not B (a rollback of B, or a
    second deploy of B, must not name B itself).
    """
    for record in reversed(records(log_path)):
        if record.status != PASSED or record.target != target:
            continue
        if "deployed" in record.meta and record.deployed is None:
            continue
        value = record.deployed if var == "TAG" and record.deployed else record.variables.get(var)
        if isinstance(value, str) and value and value != exclude:
            return value
    return None
