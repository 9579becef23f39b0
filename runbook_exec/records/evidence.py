"""Run evidence for the site: masked run reports (``report.json``) read back, and for each cell and section
the newest run that covered it.

Only reads files the runner wrote (already masked); never runs anything and imports nothing heavy, so the
MkDocs plugin stays cheap to load. A report the reader cannot understand is a one-line problem, not a crash.
"""

from __future__ import annotations

import glob
import json
import posixpath
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from runbook_exec.doc.document import Runbook
from runbook_exec.records.results import FAILED, PASSED, SKIPPED, TIMED_OUT, source_sha256

DEFAULT_REPORTS = (".runbook/runs/*/report.json",)
UNVERIFIED = "unverified"
STATUSES = (PASSED, FAILED, TIMED_OUT, SKIPPED)


@dataclass(frozen=True)
class CellRun:
    """One cell as a report recorded it. Text fields are as masked by the runner."""

    id: str | None
    section: str | None
    when: str
    status: str  # passed | failed | timed_out | skipped
    reason: str | None  # refused | interrupted (with status failed)
    started_at: datetime | None
    duration_s: float
    attempts: int
    exit_code: int | None
    first_error: str | None
    tail: tuple[str, ...]
    source_sha256: str | None  # None: written before reports recorded it


@dataclass(frozen=True)
class Run:
    """One run report."""

    path: Path
    run_id: str
    runbook: str
    status: str  # passed | failed
    interrupted: bool
    started_at: datetime
    finished_at: datetime
    selection: tuple[str, ...]
    variables: Mapping[str, str]
    cells: tuple[CellRun, ...]

    @property
    def duration_s(self) -> float:
        return max(0.0, (self.finished_at - self.started_at).total_seconds())

    @property
    def tag(self) -> str | None:
        return self.variables.get("TAG") or None


@dataclass(frozen=True)
class Evidence:
    """What the site shows for one cell: the newest run that covered it, if any."""

    status: str  # passed | failed | timed_out | skipped | unverified
    run: Run | None = None
    cell: CellRun | None = None
    changed: bool | None = None  # True: edited since; False: the same source; None: cannot tell


@dataclass(frozen=True)
class SectionRun:
    """The newest run that selected a section (``--section ID``), counted over that section's cells."""

    section: str
    run: Run
    status: str  # failed | timed_out | passed | skipped
    passed: int
    total: int
    duration_s: float


class _NotAReport(ValueError):
    pass


def load(root: Path, patterns: Sequence[str]) -> tuple[list[Run], list[str]]:
    """Every report matched by ``patterns`` (globs, relative to ``root`` or absolute), oldest first, and one
    ``path: problem`` line per file that is not a readable run report. No match at all is not a problem."""
    paths: set[Path] = set()
    for pattern in patterns:
        full = pattern if Path(pattern).is_absolute() else str(root / pattern)
        paths.update(Path(p) for p in glob.glob(full, recursive=True) if Path(p).is_file())
    runs: list[Run] = []
    problems: list[str] = []
    for path in sorted(paths):
        try:
            runs.append(read(path))
        except OSError as exc:
            problems.append(f"{path}: cannot read run report: {exc.strerror}")
        except _NotAReport as exc:
            problems.append(f"{path}: not a run report ({exc})")
    runs.sort(key=lambda r: (r.started_at, str(r.path)))
    return runs, problems


def read(path: Path) -> Run:
    """Read one ``report.json``. Raises ``OSError`` or ``ValueError`` (with a short reason)."""
    try:
        data = json.loads(path.read_bytes())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _NotAReport(f"invalid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise _NotAReport("not a JSON object")
    cells = data.get("cells")
    if not isinstance(cells, list) or not isinstance(data.get("runbook"), str):
        raise _NotAReport("no runbook and cells")
    started = _time(data.get("started_at"), "started_at")
    if started is None:
        raise _NotAReport("no started_at")
    finished = _time(data.get("finished_at"), "finished_at") or started
    run_dir = data.get("run_dir")
    run_id = posixpath.basename(str(run_dir).replace("\\", "/").rstrip("/")) if run_dir else path.parent.name
    variables = data.get("variables")
    return Run(
        path=path,
        run_id=run_id or path.stem,
        runbook=data["runbook"],
        status=PASSED if data.get("status") == PASSED else FAILED,
        interrupted=data.get("interrupted") is True,
        started_at=started,
        finished_at=finished,
        selection=tuple(str(s) for s in data.get("selection") or ()),
        variables={str(k): str(v) for k, v in variables.items()} if isinstance(variables, dict) else {},
        cells=tuple(_cell(c, n) for n, c in enumerate(cells)),
    )


def _cell(data: Any, n: int) -> CellRun:
    if not isinstance(data, dict):
        raise _NotAReport(f"cells[{n}] is not an object")
    status = data.get("status")
    if status not in STATUSES:
        raise _NotAReport(f"cells[{n}]: unknown status {status!r}")
    tail = data.get("tail") or []
    digest = data.get("source_sha256")
    exit_code = data.get("exit_code")
    return CellRun(
        id=_str(data.get("id")),
        section=_str(data.get("section")),
        when=_str(data.get("when")) or "success",
        status=status,
        reason=_str(data.get("reason")),
        started_at=_time(data.get("started_at"), f"cells[{n}].started_at"),
        duration_s=_number(data.get("duration_s")),
        attempts=int(_number(data.get("attempts"))),
        exit_code=exit_code if isinstance(exit_code, int) and not isinstance(exit_code, bool) else None,
        first_error=_str(data.get("first_error")),
        tail=tuple(str(line) for line in tail) if isinstance(tail, list) else (),
        source_sha256=digest if isinstance(digest, str) and digest else None,
    )


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _number(value: Any) -> float:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0.0


def _time(value: Any, name: str) -> datetime | None:
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(str(value))
    except ValueError:
        raise _NotAReport(f"{name}: not an ISO time: {value!r}") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


# -- choosing ------------------------------------------------------------------------------------------


def same_runbook(reported: str, path: str, root: Path) -> bool:
    """Whether a report's ``runbook`` (as given on the command line) names the runbook at ``path``.

    Relative paths were given from the repository root (how the runbook is run): they must be equal.
    Absolute paths match inside ``root``, or, when the run happened in another checkout (a CI workspace),
    by their ending.
    """
    wanted = posixpath.normpath(path.replace("\\", "/"))
    given = reported.replace("\\", "/")
    if not posixpath.isabs(given) and not Path(reported).is_absolute():
        return posixpath.normpath(given) == wanted
    absolute = Path(reported)
    try:
        return absolute.resolve().relative_to(root.resolve()).as_posix() == wanted
    except ValueError:
        return posixpath.normpath(given).endswith("/" + wanted)


def for_runbook(runs: Sequence[Run], path: str, root: Path) -> list[Run]:
    """The runs of the runbook at ``path`` (repository-relative), oldest first."""
    return [r for r in runs if same_runbook(r.runbook, path, root)]


def cell_evidence(book: Runbook, runs: Sequence[Run]) -> dict[str, Evidence]:
    """Per executable cell id: the newest of ``runs`` (this runbook's, oldest first) that had the cell in its
    plan, and whether the cell's source changed since. Cells no run covers are ``unverified``."""
    newest: dict[str, tuple[Run, CellRun]] = {}
    for run in runs:
        for recorded in run.cells:
            if recorded.id:
                newest[recorded.id] = (run, recorded)
    found: dict[str, Evidence] = {}
    for cell in book.executable_cells():
        if not cell.id:
            continue
        hit = newest.get(cell.id)
        if hit is None:
            found[cell.id] = Evidence(UNVERIFIED)
            continue
        run, result = hit
        changed = None if result.source_sha256 is None else result.source_sha256 != source_sha256(cell.source)
        found[cell.id] = Evidence(result.status, run, result, changed)
    return found


def section_runs(book: Runbook, runs: Sequence[Run]) -> list[SectionRun]:
    """For each section a run selected by name (``--section ID``), in document order: the newest such run,
    counted over the cells of that section (sub-sections included)."""
    newest: dict[str, Run] = {}
    for run in runs:
        for item in run.selection:
            kind, _, name = item.partition(":")
            if kind == "section" and name:
                newest[name] = run
    parents = {s.id: s.parent for s in book.sections}
    out: list[SectionRun] = []
    for section in book.sections:
        found = newest.get(section.id)
        if found is None:
            continue
        run = found
        mine = [c for c in run.cells if _within(c.section, section.id, parents)]
        statuses = {c.status for c in mine}
        status = next((s for s in (FAILED, TIMED_OUT, PASSED) if s in statuses), SKIPPED)
        only = run.selection == (f"section:{section.id}",)
        duration = run.duration_s if only else sum(c.duration_s for c in mine)
        passed = sum(c.status == PASSED for c in mine)
        out.append(SectionRun(section.id, run, status, passed, len(mine), duration))
    return out


def _within(section: str | None, ancestor: str, parents: Mapping[str, str | None]) -> bool:
    seen: set[str] = set()
    while section is not None and section not in seen:
        if section == ancestor:
            return True
        seen.add(section)
        section = parents.get(section)
    return False
