"""What ``--list`` and ``--dry-run`` print: the runbook's sections and cells, the planned cells in order."""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING

from runbook_exec.doc import document
from runbook_exec.doc.document import Cell, Runbook

if TYPE_CHECKING:  # --list imports neither plans nor masking engines
    from runbook_exec.run.plan import Plan
    from runbook_exec.secrets.masking import Redactor


def honor_list_request(book: Runbook, as_json: bool) -> int:
    if as_json:
        print(json.dumps(document.listing(book), ensure_ascii=False, indent=2))
    else:
        print(_render_list(book))
    for problem in book.problems:
        print(problem, file=sys.stderr)
    for warning in book.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    return 2 if book.problems else 0


def _render_list(book: Runbook) -> str:
    lines = [book.path]
    for s in book.sections:
        cells = [c for c in book.cells if c.executable and c.section == s.id]
        mark = "" if s.explicit else "  (slug)"
        lines.append(f"{'  ' * (s.level - 1)}#{s.id}  {s.title}  line {s.line}{mark}")
        for c in cells:
            lines.append(f"{'  ' * s.level}  - {c.label}  line {c.line}{_flags(c, book)}")
    orphans = [c for c in book.cells if c.executable and c.section is None]
    for c in orphans:
        lines.append(f"  - {c.label}  line {c.line}{_flags(c, book)}")
    return "\n".join(lines)


def _flags(c: Cell, book: Runbook | None = None) -> str:
    o = c.options
    flags = []
    if c.name_generated:
        flags.append("generated name")
    if c.route.kind == "process":
        flags.append(f"runs {' '.join(c.route.candidates[0])}")
    if o.background:
        flags.append("background")
    tags = book.tags_of(c) if book is not None else o.tags
    if tags:
        flags.append(f"tags={','.join(tags)}")
    if c.danger:
        flags.append("danger")
    if o.when != "success":
        flags.append(f"when={o.when}")
    if o.timeout:
        flags.append(f"timeout={o.timeout:g}")
    if o.retries:
        flags.append(f"retries={o.retries} interval={o.interval:g}")
    if o.expect:
        flags.append(f"expect={o.expect}")
    if o.exclude_from_run_all:
        flags.append("excluded from run-all")
    return f"  [{', '.join(flags)}]" if flags else ""


def honor_dry_run(plan: Plan, redactor: Redactor, as_json: bool) -> int:
    """Show the planned cells. Only what came from the runbook and the environment is masked (one value
    at a time); the runner's own numbers and words (line, timeout, counts) stay as they are."""
    from runbook_exec.run.console import tell

    mask = redactor.mask
    for warning in plan.warnings:
        tell(mask(f"warning: {warning}"))
    if as_json:
        data = {
            "runbook": mask(plan.runbook.path),
            "selection": [mask(s) for s in plan.selection],
            "variables": redactor.mask_json(dict(plan.variables)),
            "cells": [
                {
                    "id": None if c.id is None else mask(c.id),
                    "label": mask(c.label),
                    "section": None if c.section is None else mask(c.section),
                    "line": c.line,
                    "when": c.options.when,
                    "timeout": plan.timeout(c),
                    "retries": c.options.retries,
                    "danger": c.danger,
                    "source": mask(c.source),
                }
                for c in plan.cells
            ],
        }
        print(json.dumps(data, ensure_ascii=False, indent=2))
        return 0
    out = [f"{mask(plan.runbook.path)}: {len(plan.cells)} cells ({', '.join(mask(s) for s in plan.selection)})"]
    for n, c in enumerate(plan.cells, 1):
        where = f"{mask(c.section)} › " if c.section else ""
        out.append(f"[{n}/{len(plan.cells)}] {where}{mask(c.label)}  line {c.line}{_flags(c)}")
        out.extend("    " + line for line in mask(c.source).rstrip("\n").split("\n"))
    print("\n".join(out))
    return 0
