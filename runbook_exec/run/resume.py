"""The resume state of a run: kept current as cells start and finish, read back by ``--resume`` and by
the next invocation when a runner died (``kill -9``, power loss) before it could finish.

One JSON line is appended per started and per finished cell to ``.runbook/state/<runbook>-<key>.jsonl``
(an append to an open file costs microseconds, so the per-cell overhead goal holds; a torn last line is
ignored). The first line describes the run (where it started, which cwd and exports it began with, where
its artifacts and release record go); a finished cell's line carries its result and, when they changed, the
working directory and the exported variables after it; the last line says how the run ended.

Values are stored in clear, secret-derived ones included (``cd /srv/$PROJECT``, ``DSN=...$PASSWORD...``):
a masked copy would come back wrong. This is the one file that may hold a secret in clear: mode 0600
under ``.runbook/``, never printed, never part of the final rescan, and deleted when the run passes.
Variables that come from the env file are not stored (they are read from the file again on resume).
"""

from __future__ import annotations

import contextlib
import getpass
import hashlib
import json
import os
import re
import socket
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

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
from runbook_exec.records.results import json_string as _js

STATE_DIR = Path(".runbook/state")
_DECL = re.compile(r"^declare -[a-zA-Z-]*x[a-zA-Z]* ([A-Za-z_][A-Za-z0-9_]*)(=|$)")
_SKIP = frozenset({"PWD", "OLDPWD", "SHLVL", "_", "RUNBOOK_ENV_FILE", "RUNBOOK_FILE"})
_BAD = (FAILED, TIMED_OUT, INTERRUPTED, REFUSED)


class NothingToResume(RunbookError):
    """``--resume`` found no failed or aborted run of this selection (a rollout then looks at the next target)."""


@dataclass(frozen=True)
class Saved:
    """Where a failed or aborted run stopped."""

    failed_cell: str
    cwd: str
    exports: str  # a bash script of ``declare -x`` lines


def state_path(runbook: str, selection: Sequence[str]) -> Path:
    key = f"{Path(runbook).resolve()}\0{Path.cwd().resolve()}\0{chr(0).join(selection)}"
    return STATE_DIR / f"{Path(runbook).stem}-{hashlib.sha256(key.encode()).hexdigest()[:16]}.jsonl"


def filter_exports(script: str, drop: set[str], initial: dict[str, str]) -> str:
    """Keep the ``declare -x`` entries the runbook set or changed, minus the env file's keys."""
    kept = []
    for entry in re.split(r"\n(?=declare -)", script.strip()):
        match = _DECL.match(entry)
        if not match:
            continue
        name = match.group(1)
        if name in drop or name in _SKIP or name.startswith("__rx_"):
            continue
        if name in initial and entry == initial[name]:
            continue
        kept.append(entry)
    return "\n".join(kept) + ("\n" if kept else "")


def parse_exports(script: str) -> dict[str, str]:
    """Map each name of an ``export -p`` listing to its entry."""
    out = {}
    for entry in re.split(r"\n(?=declare -)", script.strip()):
        match = _DECL.match(entry)
        if match:
            out[match.group(1)] = entry
    return out


def _begin_line(cell_id: str | None, label: str, section: str | None, line: int, at: float) -> bytes:
    return (
        f'{{"begin": {_js(cell_id)}, "label": {_js(label)}, "section": {_js(section)}, "line": {line:d}, '
        f'"at": {at:.6f}}}\n'
    ).encode("utf-8", "surrogatepass")


def _now() -> str:
    return datetime.now(UTC).isoformat()


class Recorder:
    """Appends one line per started and per finished cell; a write that fails never stops the run.

    Each line is one ``write`` to the file (no user-space buffer), so it is in the kernel, and survives
    ``kill -9`` of the runner, as soon as the call returns. Times in cell lines are POSIX timestamps.
    """

    def __init__(self, path: Path, header: Mapping[str, Any]) -> None:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.path = path
        self.error: str | None = None
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o600)
        os.fchmod(self._fd, 0o600)  # an older file may have been created with a wider mode
        self._last_exports: str | None = str(header.get("exports", ""))
        self._last_cwd: str | None = str(header.get("cwd", ""))
        self._open: set[int] = set()  # lines of the cells begun whose result is not recorded yet
        # Begins to be written with the next result, as (id, label, section, line, time): formatted then,
        # not while the next cell waits to be sent.
        self._deferred: list[tuple[str | None, str, str | None, int, float]] = []
        self._line({"run": "start", "at": _now(), "pid": os.getpid(), **header})

    def _line(self, data: Mapping[str, Any]) -> None:
        self._write(json.dumps(data, ensure_ascii=False).encode("utf-8", "surrogatepass") + b"\n")

    def _write(self, line: bytes) -> None:
        if self.error is not None:
            return
        try:
            os.write(self._fd, line)
        except OSError as exc:
            self.error = exc.strerror or str(exc)

    def begin(self, cell_id: str | None, label: str, section: str | None, line: int) -> None:
        """A cell was sent to the shell: if the runner dies now, this is the cell that was running.

        While an earlier cell's result is still to be recorded (the next cell is sent to bash as soon as
        the earlier one ends), this line is written together with that result: one write per cell.
        """
        begin = (cell_id, label, section, line, time.time())
        if self._open:
            self._deferred.append(begin)
        else:
            self._write(_begin_line(*begin))
        self._open.add(line)  # a cell's line identifies it in its runbook (its label may be masked later)

    def cell(self, result: CellResult, cwd: str, exports: str) -> None:
        """Record a finished cell. The cwd and exports are written only when they changed."""
        self._open.discard(result.line)
        started = "null" if result.started_at is None else f"{result.started_at.timestamp():.6f}"
        text = (
            f'{{"cell": {_js(result.id)}, "when": {_js(result.when)}, "label": {_js(result.label)}, '
            f'"section": {_js(result.section)}, "line": {result.line:d}, "status": {_js(result.status)}, '
            f'"exit_code": {"null" if result.exit_code is None else f"{result.exit_code:d}"}, '
            f'"attempts": {result.attempts:d}, "duration_s": {result.duration_s:.6f}, "started_at": {started}'
        )
        extra: dict[str, Any] = {}
        if result.status != PASSED:
            extra["first_error"] = result.first_error
            extra["tail"] = list(result.tail)
        if cwd != self._last_cwd:
            extra["cwd"] = self._last_cwd = cwd
        if exports != self._last_exports:
            extra["exports"] = self._last_exports = exports
        if extra:
            text += ", " + json.dumps(extra, ensure_ascii=False)[1:-1]
        data = text.encode("utf-8", "surrogatepass") + b"}\n"
        if self._deferred:  # in the order they happened: the begins came before this result
            data = self._take_deferred() + data
        self._write(data)

    def _take_deferred(self) -> bytes:
        data = b"".join(_begin_line(*begin) for begin in self._deferred)
        self._deferred.clear()
        return data

    def close(self, status: str) -> None:
        """Record how the run ended; a passed run needs no resume, so its state (and any secret-derived
        value in it) is deleted."""
        if self._deferred:
            self._write(self._take_deferred())
        self._line({"run": "end", "status": status, "at": _now()})
        with contextlib.suppress(OSError):
            os.fsync(self._fd)
        with contextlib.suppress(OSError):
            os.close(self._fd)
        if status == PASSED:
            with contextlib.suppress(OSError):
                self.path.unlink()


@dataclass(frozen=True)
class _Run:
    """A state file read back."""

    header: Mapping[str, Any]
    finished: list[dict[str, Any]] = field(default_factory=list)
    running: list[dict[str, Any]] = field(default_factory=list)  # begun, not finished (in order)
    end: Mapping[str, Any] | None = None


def _read(path: Path) -> _Run | None:
    try:
        raw = path.read_bytes().decode("utf-8", "surrogateescape").split("\n")
    except OSError:
        return None
    run: _Run | None = None
    for text in raw:
        try:
            data = json.loads(text)
        except ValueError:
            continue  # a torn last line
        if not isinstance(data, dict):
            continue
        if data.get("run") == "start":
            run = _Run(header=data)
        elif run is None:
            continue
        elif data.get("run") == "end":
            run = _Run(run.header, run.finished, run.running, data)
        elif "begin" in data:
            run.running.append(data)
        elif "cell" in data:
            run.finished.append(data)
            # Every begin of that cell (a retry begins it again) is finished by its result.
            run.running[:] = [b for b in run.running if b.get("line") != data.get("line")]
    return run


def load(runbook: str, selection: Sequence[str]) -> Saved:
    """The state to resume from, or :class:`RunbookError` when there is nothing to resume.

    A failed run resumes at its failed cell; a run whose runner died resumes at the cell that was running.
    The cwd and exports are those after the last passed cell (or those the run started with).
    """
    path = state_path(runbook, selection)
    what = ", ".join(selection)
    run = _read(path)
    if run is None:
        raise NothingToResume(f"{runbook}: nothing to resume: no failed run of this selection ({what}) here")
    cwd = str(run.header.get("cwd") or os.getcwd())
    exports = str(run.header.get("exports") or "")
    current_cwd, current_exports = cwd, exports
    failed: object = None
    found = False
    for data in run.finished:
        current_cwd = str(data.get("cwd") or current_cwd)
        current_exports = str(data["exports"]) if "exports" in data else current_exports
        status = data.get("status")
        if status == PASSED:
            cwd, exports = current_cwd, current_exports
        elif status in _BAD and data.get("when") == "success":
            failed, found = data.get("cell"), True
            break
    ended = run.end.get("status") if run.end else None
    if not found and run.running and ended in (None, ABORTED):
        failed, found = run.running[0].get("begin"), True
    if not found:
        raise NothingToResume(f"{runbook}: nothing to resume: the last run of this selection ({what}) did not fail")
    if not isinstance(failed, str):
        raise RunbookError(f"{runbook}: cannot resume: the failed cell has no id (give it one: {{#id .exec}})")
    return Saved(failed_cell=failed, cwd=cwd, exports=exports)


# -- runs whose runner died --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Unfinished:
    """A run that started here and never wrote its end (the runner was killed or the machine stopped)."""

    path: Path
    header: Mapping[str, Any]
    report: RunReport
    running: str | None  # the label of the cell that was running, if one was


def unfinished(runbook: str, target: str | None = None) -> list[Unfinished]:
    """Every unfinished run of ``runbook`` against ``target`` (None: runs without one) in this directory,
    whatever its selection.

    Call this holding the run lock of ``runbook`` and ``target``: then no runner of those runs is alive, so
    a run without an end line is one whose runner died. Runs against other targets have other locks (their
    runners may be alive) and are left alone.
    """
    book = str(Path(runbook).resolve())
    here = str(Path.cwd().resolve())
    found = []
    for path in sorted(STATE_DIR.glob(f"{Path(runbook).stem}-*.jsonl")):
        if _ended(path):
            continue  # the usual case, decided from the last line without reading the whole file
        run = _read(path)
        if run is None or run.end is not None:
            continue
        if run.header.get("runbook_path") != book or run.header.get("invoked_in") != here:
            continue  # another runbook with the same name, or a state file of an older version
        if run.header.get("target") != target:
            continue
        found.append(Unfinished(path, run.header, _aborted_report(run), _running_label(run)))
    return found


def _ended(path: Path) -> bool:
    try:
        with open(path, "rb") as fh:
            size = fh.seek(0, os.SEEK_END)
            fh.seek(max(0, size - 512))
            last = fh.read().rstrip(b"\n").rsplit(b"\n", 1)[-1]
    except OSError:
        return True
    return last.startswith(b'{"run": "end"')


def mark_recorded(item: Unfinished) -> None:
    """Close an unfinished run's state as aborted (its record is written); it stays resumable."""
    with contextlib.suppress(OSError), open(item.path, "ab") as fh:
        fh.write(b"\n" + json.dumps({"run": "end", "status": ABORTED, "at": _now()}).encode() + b"\n")


def _running_label(run: _Run) -> str | None:
    return str(run.running[0].get("label") or run.running[0].get("begin")) if run.running else None


def _time(value: object) -> datetime | None:
    """A time as the state stores it: a POSIX timestamp (cell lines) or ISO 8601 (run lines)."""
    try:
        if isinstance(value, int | float):
            return datetime.fromtimestamp(value, UTC)
        return datetime.fromisoformat(str(value)) if value else None
    except (ValueError, OverflowError, OSError):
        return None


def _aborted_report(run: _Run) -> RunReport:
    """The report of a run whose runner died: finished cells as recorded, the running cell interrupted."""
    header = run.header
    cells = [_result(data) for data in run.finished]
    for data in run.running:
        cells.append(
            CellResult(
                id=data.get("begin"),
                label=str(data.get("label") or data.get("begin") or f"line-{data.get('line')}"),
                section=data.get("section"),
                line=int(data.get("line") or 0),
                when="success",
                status=INTERRUPTED,
                started_at=_time(data.get("at")),
            )
        )
    started = _time(header.get("at")) or datetime.now(UTC)
    stamps = [t for t in (_time(d.get("at")) for d in [*run.finished, *run.running]) if t is not None]
    finished = max(stamps, default=started)
    variables = header.get("variables")
    return RunReport(
        runbook=str(header.get("runbook", "")),
        runbook_sha256=str(header.get("sha256", "")),
        status=ABORTED,
        started_at=started,
        finished_at=finished,
        selection=tuple(str(s) for s in header.get("selection", ())),
        cells=tuple(cells),
        variables={str(k): str(v) for k, v in variables.items()} if isinstance(variables, dict) else {},
        operator=str(header.get("operator", "")),
        host=str(header.get("host", "")),
        run_dir=header.get("run_dir"),
        transcript=header.get("transcript"),
        exit_code=None,
        target=_text(header.get("target")),
        engine_host=_text(header.get("engine_host")),
    )


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _result(data: Mapping[str, Any]) -> CellResult:
    status = str(data.get("status") or FAILED)
    return CellResult(
        id=data.get("cell"),
        label=str(data.get("label") or data.get("cell") or ""),
        section=data.get("section"),
        line=int(data.get("line") or 0),
        when=str(data.get("when") or "success"),
        status=status if status in (PASSED, FAILED, TIMED_OUT, SKIPPED, REFUSED, INTERRUPTED) else FAILED,
        exit_code=data.get("exit_code"),
        attempts=int(data.get("attempts") or 0),
        duration_s=float(data.get("duration_s") or 0.0),
        started_at=_time(data.get("started_at")),
        first_error=data.get("first_error"),
        tail=tuple(str(t) for t in data.get("tail") or ()),
    )


def header(
    *,
    runbook: str,
    sha256: str,
    selection: Sequence[str],
    variables: Mapping[str, str],
    cwd: str,
    exports: str,
    artifacts: Mapping[str, Path],
    release_log: str | None,
    release_template: str | None,
    target: str | None = None,
    engine_host: str | None = None,
) -> dict[str, Any]:
    """The first line of a state file: enough to resume the run, and to record it should its runner die."""
    return {
        "runbook": runbook,
        "runbook_path": str(Path(runbook).resolve()),
        "invoked_in": str(Path.cwd().resolve()),
        "sha256": sha256,
        "selection": list(selection),
        "variables": dict(variables),
        "cwd": cwd,
        "exports": exports,
        "run_dir": str(artifacts["dir"]),
        "transcript": str(artifacts["transcript"]),
        "report": str(artifacts["report"]),
        "junit": str(artifacts["junit"]),
        "release_log": str(Path(release_log).resolve()) if release_log else None,
        "release_template": str(Path(release_template).resolve()) if release_template else None,
        "operator": _operator(),
        "host": socket.gethostname(),
        "target": target,
        "engine_host": engine_host,
    }


def _operator() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"
