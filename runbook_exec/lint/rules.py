"""Structural checks of a parsed runbook: attributes, ids, targetable sections, ``when=failure`` order.

The attribute grammar and front-matter schema live in :mod:`runbook_exec.doc.document` / :mod:`options`; their
problems are reused here (never re-parsed) and only given finer codes.
"""

from __future__ import annotations

import re

from runbook_exec.doc.document import Runbook, Section
from runbook_exec.errors import Problem
from runbook_exec.lint.findings import WARNING, Finding, finding

# document.py reports every cell problem as RX105; the message says which kind it is.
_CELL_KINDS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"^attributes: "), "RX105"),
    (re.compile(r"^unknown key '(?P<key>[^']+)'"), "RX106"),
    (re.compile(r"^\.exec on "), "RX108"),
    (re.compile(r"^two ids: "), "RX109"),
    (re.compile(r"^key '(?P<key>[^']+)' given twice"), "RX107"),
    (re.compile(r"^(?P<key>[A-Za-z_][\w:-]*)="), "RX107"),
)


def check_structure(book: Runbook) -> list[Finding]:
    """Every structural finding for ``book``, in no particular order."""
    lines = book.text.split("\n")
    out = [_from_problem(p, lines) for p in book.problems]
    out += [_from_warning(p, lines) for p in book.warnings]
    out += cells_without_id(book)
    out += _implicit_sections(book)
    out += _failure_first(book)
    out += _json_attributes(book, lines)
    out += id_collisions(book)
    return out


def _from_problem(problem: Problem, lines: list[str]) -> Finding:
    code, col = problem.code, 1
    raw = lines[problem.line - 1] if 0 < problem.line <= len(lines) else ""
    if code == "RX105":
        for pattern, kind in _CELL_KINDS:
            match = pattern.search(problem.message)
            if match:
                code = kind
                key = match.groupdict().get("key")
                col = _column_of(raw, f"{key}=") if key else _column_of(raw, "{")
                break
    elif code == "RX101":
        col = _column_of(raw, "{")
    code = code if code != "RX000" else "RX105"
    return finding(problem.path, problem.line, col, code, problem.message)


def _from_warning(problem: Problem, lines: list[str]) -> Finding:
    """A Runme-mode note (the file runs as Runme would run it): a warning, at the key it is about."""
    raw = lines[problem.line - 1] if 0 < problem.line <= len(lines) else ""
    match = re.match(r"(?:unknown key )?'?(?P<key>[A-Za-z_][\w:-]*)'?[ =]", problem.message)
    col = _column_of(raw, f"{match.group('key')}") if match and problem.code == "RX115" else 1
    return finding(problem.path, problem.line, col, problem.code, problem.message, WARNING)


def _column_of(raw: str, needle: str) -> int:
    index = raw.find(needle)
    return index + 1 if index >= 0 else 1


def cells_without_id(book: Runbook) -> list[Finding]:
    """``RX110``: executable cells without an id (the site build reports the same findings).

    In Runme mode a cell without ``name`` has a generated one, which changes whenever its first line does.
    """
    how = "name=ID" if book.runme else "#ID"
    out = []
    for c in book.cells:
        if not c.executable or not (c.id is None or c.name_generated):
            continue
        what = f"{c.lang or 'shell'} cell" if book.runme else f"{c.lang} cell"
        if c.id is None:
            message = f"executable {what} has no id: add {{{how}}} so --cell, --from and reports can name it"
        else:
            message = (
                f"executable {what} has only the generated name {c.id!r} (from its first line, so it changes "
                f"with that line): add {{{how}}} so --cell, --from and reports keep naming it"
            )
        out.append(finding(book.path, c.line, 1, "RX110", message))
    return out


def _targetable(book: Runbook) -> dict[str, Section]:
    by_id = {s.id: s for s in book.sections}
    found: dict[str, Section] = {}
    for cell in book.cells:
        if cell.executable:
            for sid in cell.sections:
                if sid in by_id:
                    found.setdefault(sid, by_id[sid])
    return found


def _implicit_sections(book: Runbook) -> list[Finding]:
    # The document's single top-level heading is its title: a whole-file run already targets it.
    tops = [s for s in book.sections if s.level == 1]
    title = tops[0].id if len(tops) == 1 else None
    return [
        finding(
            book.path,
            s.line,
            1,
            "RX111",
            f"section {s.title!r} holds executable cells but has no explicit id; its anchor #{s.id} changes "
            f"when the title is edited: add {{#{_suggest(s)}}}",
        )
        for s in _targetable(book).values()
        if not s.explicit and s.id != title
    ]


def _suggest(section: Section) -> str:
    ascii_slug = re.sub(r"[^a-z0-9]+", "-", section.title.lower()).strip("-")
    return ascii_slug or section.id


def _failure_first(book: Runbook) -> list[Finding]:
    out: list[Finding] = []
    normal_seen = False
    for cell in book.cells:
        if not cell.executable:
            continue
        if cell.options.when == "failure" and not normal_seen:
            out.append(
                finding(
                    book.path,
                    cell.line,
                    1,
                    "RX112",
                    f"cell {cell.label} runs only after a failure, but no normal cell comes before it: "
                    "it can never run",
                )
            )
        elif cell.options.when != "failure":
            normal_seen = True
    return out


def _json_attributes(book: Runbook, lines: list[str]) -> list[Finding]:
    out = []
    for cell in book.cells:
        if cell.attrs.style == "json":
            raw = lines[cell.line - 1] if 0 < cell.line <= len(lines) else ""
            out.append(
                finding(
                    book.path,
                    cell.line,
                    _column_of(raw, "{"),
                    "RX113",
                    "JSON-style attributes run, but the site drops them (no title, no cell card): "
                    "write them as {#name key=value}",
                    WARNING,
                )
            )
    return out


def id_collisions(book: Runbook) -> list[Finding]:
    """``RX114``: cell ids that are also section ids (the site build reports the same findings)."""
    sections = {s.id: s for s in book.sections}
    return [
        finding(
            book.path,
            c.line,
            1,
            "RX114",
            f"cell id #{c.id} is also the id of section {sections[c.id].title!r} (line {sections[c.id].line}): "
            "the site anchor is ambiguous",
        )
        for c in book.cells
        if c.id is not None and c.id in sections
    ]
