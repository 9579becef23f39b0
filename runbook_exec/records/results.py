"""What a run produced: plain frozen data, shared by the executor, reports and release.log."""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from json.encoder import encode_basestring
from typing import Any

PASSED, FAILED, TIMED_OUT, SKIPPED, REFUSED, INTERRUPTED = (
    "passed",
    "failed",
    "timed_out",
    "skipped",
    "refused",
    "interrupted",
)
# A run whose runner died (kill -9, power loss) before it could finish; recorded by the next invocation.
ABORTED = "aborted"

# JSON report fields the runner writes itself (statuses, times, counts, ids, paths it generated): never
# masked, never counted as a leak by the final rescan. Every other field came from cells, the runbook text
# or the environment and is masked (and rescanned), including fields added later.
RUN_FIELDS_OWN = frozenset(
    {
        "runbook_sha256",
        "status",
        "interrupted",
        "aborted",
        "exit_code",
        "started_at",
        "finished_at",
        "duration_s",
        "operator",
        "host",
        "run_dir",
        "transcript",
        # A target's name is validated and resolved by the runner and already part of its run folder's
        # name; the engine's host name is what the runner asked the engine (as ``host`` is this machine's).
        "target",
        "engine_host",
    }
)
CELL_FIELDS_OWN = frozenset(
    {"status", "reason", "when", "line", "exit_code", "attempts", "duration_s", "started_at", "source_sha256"}
)


def source_sha256(source: str) -> str:
    """Hex SHA-256 of a cell's source as the document model holds it (what the site compares for drift)."""
    return hashlib.sha256(source.encode("utf-8", "surrogatepass")).hexdigest()


def json_string(value: str | None) -> str:
    """A JSON string (or null), as ``json.dumps(..., ensure_ascii=False)`` writes it (the json module's C
    encoder for strings)."""
    return "null" if value is None else encode_basestring(value)


_js = json_string  # short, inside the f-strings that write JSON field by field


@dataclass(frozen=True)
class CellResult:
    """The outcome of one planned cell. Every text field is already masked."""

    id: str | None
    label: str
    section: str | None
    line: int
    when: str
    status: str  # passed | failed | timed_out | skipped | refused | interrupted
    exit_code: int | None = None
    attempts: int = 0
    duration_s: float = 0.0
    started_at: datetime | None = None
    first_error: str | None = None  # first line that looks like an error, masked
    tail: tuple[str, ...] = ()  # last 20 output lines, masked
    source_sha256: str | None = None  # of the source that ran (None: not recorded)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "label": self.label,
            "section": self.section,
            "line": self.line,
            "when": self.when,
            # The report's documented statuses are passed | failed | timed_out | skipped; a refused or
            # interrupted cell is "failed" with the reason alongside.
            "status": FAILED if self.status in (REFUSED, INTERRUPTED) else self.status,
            "reason": self.status if self.status in (REFUSED, INTERRUPTED) else None,
            "exit_code": self.exit_code,
            "attempts": self.attempts,
            "duration_s": round(self.duration_s, 6),
            "started_at": self.started_at.isoformat() if self.started_at else None,
            "first_error": self.first_error,
            "tail": list(self.tail),
            "source_sha256": self.source_sha256,
        }

    @cached_property
    def json_text(self) -> str:
        """:meth:`to_json` as the compact JSON report holds it (``json.dumps(..., ensure_ascii=False)``), made
        once: a run made it while bash ran the next cell, and its report only joins these texts.

        Written out field by field with the encoder's own string function: ~3x faster than building the
        dict and encoding it, byte for byte the same."""
        duration = round(self.duration_s, 6)
        if not (
            type(duration) is float
            and math.isfinite(duration)
            and type(self.line) is int
            and type(self.attempts) is int
            and (self.exit_code is None or type(self.exit_code) is int)
        ):
            return json.dumps(self.to_json(), ensure_ascii=False)  # not as typed (a hand-edited state file)
        refused = self.status in (REFUSED, INTERRUPTED)
        try:
            return (
                f'{{"id": {_js(self.id)}, "label": {_js(self.label)}, "section": {_js(self.section)}, '
                f'"line": {self.line!r}, "when": {_js(self.when)}, '
                f'"status": {_js(FAILED if refused else self.status)}, '
                f'"reason": {_js(self.status if refused else None)}, '
                f'"exit_code": {"null" if self.exit_code is None else repr(self.exit_code)}, '
                f'"attempts": {self.attempts!r}, "duration_s": {duration!r}, '
                f'"started_at": {"null" if self.started_at is None else _js(self.started_at.isoformat())}, '
                f'"first_error": {_js(self.first_error)}, "tail": [{", ".join(map(_js, self.tail))}], '
                f'"source_sha256": {_js(self.source_sha256)}}}'
            )
        except TypeError:  # a text field that is not a string
            return json.dumps(self.to_json(), ensure_ascii=False)


@dataclass(frozen=True)
class RunReport:
    """The outcome of one run. ``status`` is passed, failed, interrupted or aborted (the runner died; the
    exit status is then unknown: None)."""

    runbook: str
    runbook_sha256: str
    status: str
    started_at: datetime
    finished_at: datetime
    selection: tuple[str, ...]  # the sections / cells asked for, as given
    cells: tuple[CellResult, ...]
    variables: Mapping[str, str] = field(default_factory=dict)  # non-secret vars (TAG, TAG_PREV, ...)
    operator: str = ""
    host: str = ""
    run_dir: str | None = None
    transcript: str | None = None
    exit_code: int | None = 0
    target: str | None = None  # --target: the target's name
    engine_host: str | None = None  # --target: the engine's host name (``docker info``)

    @property
    def failed_cell(self) -> CellResult | None:
        return next((c for c in self.cells if c.status in (FAILED, TIMED_OUT, REFUSED, INTERRUPTED)), None)

    def to_json(self, cells: bool = True) -> dict[str, Any]:
        """The JSON report's data; ``cells=False``: all of it but the ``cells`` list (its last key)."""
        data: dict[str, Any] = {
            "runbook": self.runbook,
            "runbook_sha256": self.runbook_sha256,
            "status": PASSED if self.status == PASSED else FAILED,
            "interrupted": self.status == INTERRUPTED,
            "aborted": self.status == ABORTED,
            "exit_code": self.exit_code,
            "started_at": self.started_at.isoformat(),
            "finished_at": self.finished_at.isoformat(),
            "duration_s": round((self.finished_at - self.started_at).total_seconds(), 6),
            "selection": list(self.selection),
            "variables": dict(self.variables),
            "operator": self.operator,
            "host": self.host,
            "run_dir": self.run_dir,
            "transcript": self.transcript,
            # Only runs against a target say so: an untargeted report keeps its shape.
            **({"target": self.target, "engine_host": self.engine_host} if self.target else {}),
        }
        if cells:
            data["cells"] = [c.to_json() for c in self.cells]
        return data
