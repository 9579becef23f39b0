"""The resume state of a run: kept current as cells finish, read back by ``--resume``.

One JSON line is appended per finished cell to ``.runbook/state/<runbook>-<key>.jsonl`` (an append to an
open file costs microseconds, so the per-cell overhead goal holds; a torn last line is ignored). A line
carries the cell's status, the working directory after it and, when they changed, the exported variables.
Values that came from the env file, or that are secrets, are never stored (they are re-read from the env
file on resume), and everything written is masked.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from runbook_exec.errors import RunbookError

STATE_DIR = Path(".runbook/state")
_DECL = re.compile(r"^declare -[a-zA-Z-]*x[a-zA-Z]* ([A-Za-z_][A-Za-z0-9_]*)(=|$)")
_SKIP = frozenset({"PWD", "OLDPWD", "SHLVL", "_", "RUNBOOK_ENV_FILE", "RUNBOOK_FILE"})


@dataclass(frozen=True)
class Saved:
    """Where a failed run stopped."""

    failed_cell: str
    cwd: str
    exports: str  # a bash script of ``declare -x`` lines


def state_path(runbook: str, selection: Sequence[str]) -> Path:
    key = f"{Path(runbook).resolve()}\0{Path.cwd().resolve()}\0{chr(0).join(selection)}"
    return STATE_DIR / f"{Path(runbook).stem}-{hashlib.sha256(key.encode()).hexdigest()[:16]}.jsonl"


DROPPED = "# not restored (derived from secrets): "


def filter_exports(script: str, drop: set[str], initial: dict[str, str], mask: Callable[[str], str]) -> str:
    """Keep the ``declare -x`` entries the runbook set or changed, minus secrets and env-file keys.

    A variable whose value holds a secret (``DSN=postgres://u:$PASSWORD@db``) is not stored at all: a masked
    copy would come back wrong on resume. Its name is listed in a comment line instead.
    """
    kept, derived = [], []
    for entry in re.split(r"\n(?=declare -)", script.strip()):
        match = _DECL.match(entry)
        if not match:
            continue
        name = match.group(1)
        if name in drop or name in _SKIP or name.startswith("__rx_"):
            continue
        if name in initial and entry == initial[name]:
            continue
        if mask(entry) != entry:
            derived.append(name)
            continue
        kept.append(entry)
    if derived:
        kept.append(DROPPED + " ".join(derived))
    return "\n".join(kept) + ("\n" if kept else "")


def dropped(exports: str) -> list[str]:
    """Names a saved state could not restore because their values held secrets."""
    for line in exports.split("\n"):
        if line.startswith(DROPPED):
            return line[len(DROPPED) :].split()
    return []


def parse_exports(script: str) -> dict[str, str]:
    """Map each name of an ``export -p`` listing to its entry."""
    out = {}
    for entry in re.split(r"\n(?=declare -)", script.strip()):
        match = _DECL.match(entry)
        if match:
            out[match.group(1)] = entry
    return out


class Recorder:
    """Appends one line per finished cell."""

    def __init__(self, path: Path, header: dict[str, str], mask: Callable[[str], str]) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._fh: BinaryIO = open(path, "wb")  # noqa: SIM115 - open for the whole run
        self._mask = mask
        self._last_exports: str | None = None
        self._last_cwd: str | None = None
        self._line({"run": "start", **{k: mask(v) for k, v in header.items()}})

    def _line(self, data: dict[str, Any]) -> None:
        self._fh.write(json.dumps(data, ensure_ascii=False).encode() + b"\n")
        self._fh.flush()

    def cell(self, cell_id: str | None, status: str, when: str, cwd: str, exports: str) -> None:
        """Record a finished cell. The cwd and exports are written (masked) only when they changed."""
        data: dict[str, Any] = {"cell": cell_id, "status": status, "when": when}
        if cwd != self._last_cwd:
            data["cwd"] = self._mask(cwd)
            self._last_cwd = cwd
        if exports != self._last_exports:
            data["exports"] = self._mask(exports)
            self._last_exports = exports
        self._line(data)

    def close(self, status: str) -> None:
        self._line({"run": "end", "status": status})
        os.fsync(self._fh.fileno())
        self._fh.close()


def load(runbook: str, selection: Sequence[str]) -> Saved:
    """The state to resume from, or :class:`RunbookError` when there is nothing to resume."""
    path = state_path(runbook, selection)
    what = ", ".join(selection)
    try:
        raw = path.read_text(encoding="utf-8", errors="replace").split("\n")
    except FileNotFoundError:
        raise RunbookError(f"{runbook}: nothing to resume: no earlier run of this selection ({what}) here") from None
    cwd, exports, failed = os.getcwd(), "", None
    current_cwd, current_exports = cwd, ""
    for line in raw:
        try:
            data = json.loads(line)
        except ValueError:
            continue  # a torn last line
        if failed is not None:
            break
        current_cwd = str(data.get("cwd") or current_cwd)
        current_exports = str(data["exports"]) if "exports" in data else current_exports
        if data.get("run") == "start":
            cwd = current_cwd
        status = data.get("status")
        if "cell" not in data:
            continue
        if status == "passed":
            cwd, exports = current_cwd, current_exports
        elif status in ("failed", "timed_out", "interrupted", "refused") and data.get("when") == "success":
            failed = data.get("cell")
    if failed is None:
        raise RunbookError(f"{runbook}: nothing to resume: the last run of this selection ({what}) did not fail")
    if not isinstance(failed, str):
        raise RunbookError(f"{runbook}: cannot resume: the failed cell has no id (give it one: {{#id .exec}})")
    return Saved(failed_cell=failed, cwd=cwd, exports=exports)
