"""HTML of an executable cell on the site: a card around the normally highlighted code.

Pure functions of a parsed :class:`~runbook_exec.document.Cell`; the MkDocs plugin supplies the highlighted
code and the runbook's path. The card carries the cell id as its anchor, a link to its section, the runner
options that change how it runs, a badge for ``.danger`` and the one command that runs just this cell.
Nothing here depends on Material beyond optional CSS variables, so the coupling to the theme stays small.
"""

from __future__ import annotations

import shlex
from html import escape

from runbook_exec.document import Cell, Runbook, Section

COMMAND = "runbook-exec"


def run_command(runbook_path: str, cell_id: str) -> str:
    """The shell command that runs only ``cell_id`` of the runbook at ``runbook_path`` (repository-relative)."""
    return f"{COMMAND} {shlex.quote(runbook_path)} --cell {shlex.quote(cell_id)}"


def _seconds(value: float) -> str:
    return f"{value:g}s"


def _chips(cell: Cell) -> list[tuple[str, str, str]]:
    """``(css modifier, text, tooltip)`` for each option that differs from the default."""
    o = cell.options
    chips: list[tuple[str, str, str]] = []
    if o.timeout is not None:
        chips.append(("timeout", f"timeout {_seconds(o.timeout)}", "이 셀의 제한 시간 / time limit of this cell"))
    if o.retries:
        every = f", interval {_seconds(o.interval)}" if o.interval else ""
        chips.append(("retries", f"retries {o.retries}{every}", "실패 시 다시 시도 / retried on failure"))
    if o.expect:
        tip = "성공으로 보는 종료 코드 / exit status that counts as success"
        chips.append(("expect", f"expect exit {o.expect}", tip))
    if o.when != "success":
        tip = {
            "failure": "앞 셀이 실패했을 때만 실행 / runs only after a failure",
            "always": "성공·실패와 관계없이 실행 / runs after success and after failure",
        }[o.when]
        chips.append(("when", f"when {o.when}", tip))
    if o.cwd:
        chips.append(("cwd", f"cwd {o.cwd}", "이 디렉터리에서 실행 / runs in this directory"))
    if o.exclude_from_run_all:
        chips.append(("excluded", "not in whole-file runs", "파일 전체 실행에서 제외 / excluded from a whole-file run"))
    return chips


def _section_link(book: Runbook, cell: Cell) -> str:
    section: Section | None = book.section(cell.section) if cell.section else None
    if section is None:
        return ""
    return (
        f'<a class="runbook-cell__section" href="#{escape(section.id)}" title="section #{escape(section.id)}">'
        f"§ {escape(section.title)}</a>"
    )


def _required_vars(book: Runbook) -> list[str]:
    return [v.name for v in book.settings.vars if v.required and v.default is None]


def render_card(book: Runbook, cell: Cell, code_html: str, runbook_path: str) -> str:
    """Wrap ``code_html`` (the normal highlighter's output for ``cell``) in the cell's card."""
    head: list[str] = []
    if cell.id:
        head.append(f'<a class="runbook-cell__id" href="#{escape(cell.id)}" title="cell id">#{escape(cell.id)}</a>')
    else:
        head.append('<span class="runbook-cell__id runbook-cell__id--missing">(no id)</span>')
    if cell.danger:
        head.append(
            '<span class="runbook-cell__badge runbook-cell__badge--danger" '
            'title="실행 전에 확인을 요청합니다 (--yes로 생략) / asks for confirmation before it runs">'
            "⚠ danger</span>"
        )
    for modifier, text, tip in _chips(cell):
        head.append(
            f'<span class="runbook-cell__opt runbook-cell__opt--{modifier}" title="{escape(tip)}">{escape(text)}</span>'
        )
    section = _section_link(book, cell)
    if section:
        head.append(section)

    if cell.id:
        command = run_command(runbook_path, cell.id)
        needs = _required_vars(book)
        note = (
            f'<span class="runbook-cell__needs">필요한 변수 / needs: {escape(", ".join(needs))}</span>' if needs else ""
        )
        run = (
            '<div class="runbook-cell__run"><span class="runbook-cell__run-label">이 셀만 실행 / run this cell</span>'
            f"{note}<pre><code>{escape(command)}</code></pre></div>"
        )
    else:
        run = (
            '<div class="runbook-cell__run runbook-cell__run--missing">'
            "id가 없어 이 셀만 실행할 수 없습니다 / add {#id} to run this cell alone</div>"
        )

    classes = "runbook-cell runbook-cell--danger" if cell.danger else "runbook-cell"
    # The anchor sits on the header, not on the card: Material names each code block after its closest
    # ancestor with an id, and two blocks under one id would make both copy buttons copy the first block.
    anchor = f' id="{escape(cell.id)}"' if cell.id else ""
    return (
        f'<div class="{classes}" data-runbook-cell="{escape(cell.label)}" data-lang="{escape(cell.lang)}">'
        f'<div class="runbook-cell__head"{anchor}>{" ".join(head)}</div>'
        f"{code_html}{run}</div>"
    )


CSS = """\
.runbook-cell {
  border: 1px solid var(--md-default-fg-color--lightest, #ddd);
  border-left: 4px solid var(--md-accent-fg-color, #526cfe);
  border-radius: 4px;
  margin: 1em 0;
  padding: 0.4em 0.6em 0.2em;
}
.runbook-cell--danger { border-left-color: #d32f2f; }
.runbook-cell:has(> .runbook-cell__head:target) { box-shadow: 0 0 0 2px var(--md-accent-fg-color, #526cfe); }
.runbook-cell__head {
  display: flex; flex-wrap: wrap; gap: 0.3em 0.5em; align-items: center;
  font-size: 0.72rem; margin-bottom: 0.2em; scroll-margin-top: 3.6rem;
}
.runbook-cell__id { font-family: var(--md-code-font-family, monospace); font-weight: 700; }
.runbook-cell__id--missing { color: #d32f2f; }
.runbook-cell__section { margin-left: auto; }
.runbook-cell__opt, .runbook-cell__badge {
  border-radius: 1em; padding: 0 0.6em;
  background: var(--md-code-bg-color, #f5f5f5);
  font-family: var(--md-code-font-family, monospace);
}
.runbook-cell__badge--danger { background: #d32f2f; color: #fff; font-weight: 700; }
.runbook-cell .highlight, .runbook-cell pre { margin: 0.2em 0; }
.runbook-cell__run { font-size: 0.7rem; }
.runbook-cell__run-label, .runbook-cell__needs { color: var(--md-default-fg-color--light, #666); margin-right: 0.8em; }
.runbook-cell__run--missing { color: #d32f2f; }
"""
