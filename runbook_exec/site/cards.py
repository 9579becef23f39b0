"""HTML of an executable cell on the site: a card around the normally highlighted code.

Pure functions of a parsed :class:`~runbook_exec.doc.document.Cell` and its
:class:`~runbook_exec.records.evidence.Evidence`; the MkDocs plugin supplies the highlighted code and the
runbook's path. The card carries the cell id as its anchor, a link to its section, the runner options that
change how it runs, a badge for ``.danger``, the last result of the cell (``data-runbook-status``,
``data-runbook-changed``) and the one command that runs just this cell. Nothing here depends on Material beyond
optional CSS variables, so the coupling to the theme stays small. Labels are Korean; the option as written in
the fence and the English wording are in ``title``."""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from pathlib import Path

from runbook_exec.doc.document import Cell, Runbook, Section, VarSpec
from runbook_exec.records.evidence import UNVERIFIED, Evidence
from runbook_exec.records.results import FAILED, SKIPPED, TIMED_OUT
from runbook_exec.site.formatting import attr, duration, status_badge, text, when

COMMAND = "runbook-exec"
CSS_FILE = Path(__file__).parent.parent / "templates" / "site.css"


def css() -> str:
    """The site's stylesheet (cards, summary, history, Korean typography)."""
    return CSS_FILE.read_text(encoding="utf-8")


def required_vars(book: Runbook) -> list[VarSpec]:
    """Variables every run of ``book`` needs from the operator (required, no default)."""
    return [v for v in book.settings.vars if v.required and v.default is None]


def run_command(runbook_path: str, cell_id: str, needs: Sequence[VarSpec] = ()) -> str:
    """The shell command that runs only ``cell_id`` of the runbook at ``runbook_path`` (repository-relative),
    with a ``--var NAME=<NAME>`` placeholder for each variable in ``needs``."""
    return " ".join(_command_parts(runbook_path, cell_id, needs))


def _command_parts(runbook_path: str, cell_id: str, needs: Sequence[VarSpec]) -> list[str]:
    """The command as the groups a line may not break inside (an option stays with its value)."""
    parts = [COMMAND, shlex.quote(runbook_path), f"--cell {shlex.quote(cell_id)}"]
    return parts + [f"--var {v.name}=<{v.name}>" for v in needs]


def _span(seconds: float) -> str:
    whole = int(seconds)
    if whole != seconds or whole < 60:
        return f"{seconds:g}초"
    minutes, rest = divmod(whole, 60)
    return f"{minutes}분" + (f" {rest}초" if rest else "")


def _chips(cell: Cell) -> list[tuple[str, str, str]]:
    """``(css modifier, label, title)`` for each option that differs from the default."""
    o = cell.options
    chips: list[tuple[str, str, str]] = []
    if o.timeout is not None:
        chips.append(("timeout", f"제한 {_span(o.timeout)}", f"timeout={o.timeout:g} · 이 셀의 제한 시간 / time limit"))
    if o.retries:
        every = f" · {_span(o.interval)} 간격" if o.interval else ""
        keys = f"retries={o.retries}" + (f" interval={o.interval:g}" if o.interval else "")
        chips.append(("retries", f"재시도 {o.retries}회{every}", f"{keys} · 실패하면 다시 시도 / retried on failure"))
    if o.expect:
        tip = f"expect={o.expect} · 성공으로 보는 종료 코드 / exit status that counts as success"
        chips.append(("expect", f"종료 코드 {o.expect}이면 성공", tip))
    if o.when == "failure":
        tip = "when=failure · 앞 셀이 실패했을 때만 실행 / runs only after a failure"
        chips.append(("when", "실패했을 때만 실행", tip))
    elif o.when == "always":
        tip = "when=always · 성공·실패와 관계없이 실행 / runs after success and after failure"
        chips.append(("when", "항상 실행", tip))
    if o.cwd:
        chips.append(("cwd", f"작업 위치 {o.cwd}", f"cwd={o.cwd} · 이 디렉터리에서 실행 / runs in this directory"))
    if o.exclude_from_run_all:
        tip = "excludeFromRunAll=true · 파일 전체 실행에서 제외 / excluded from a whole-file run"
        chips.append(("excluded", "전체 실행에서 제외", tip))
    return chips


def _section_link(book: Runbook, cell: Cell) -> str:
    section: Section | None = book.section(cell.section) if cell.section else None
    if section is None:
        return ""
    return (
        f'<a class="runbook-cell__section" href="#{attr(section.id)}" title="섹션 / section #{attr(section.id)}">'
        f"§ {text(section.title)}</a>"
    )


def _evidence(cell: Cell, found: Evidence) -> str:
    """The card's result line: status, when, TAG, duration and run id (or "not yet verified"), the drift
    warning, and for a failed cell the first error line and the last lines (what a release record holds)."""
    if found.run is None or found.cell is None:
        badge = status_badge(UNVERIFIED, None, "이 셀을 실행한 보고서가 없습니다")
        return f'<div class="runbook-cell__evidence">{badge}</div>'
    run, result = found.run, found.cell
    why = ""
    if result.status == SKIPPED:
        quiet = cell.options.when == "failure" and run.status != FAILED
        why = "실패가 없어 실행하지 않음" if quiet else "앞 셀이 실패해 실행하지 않음"
    parts = [status_badge(result.status, result.reason, why)]
    if why:
        parts.append(f'<span class="runbook-cell__hint">{text(why)}</span>')
    parts.append(when(result.started_at or run.started_at))
    if run.tag:
        parts.append(f'<span class="runbook-cell__tag" title="TAG">TAG <code>{text(run.tag)}</code></span>')
    if result.status != SKIPPED:
        attempts = f" · {result.attempts}회 시도" if result.attempts > 1 else ""
        took = duration(result.duration_s) + attempts
        parts.append(f'<span class="runbook-cell__duration" title="소요 시간 / duration">{took}</span>')
    parts.append(
        f'<span class="runbook-cell__runid" title="실행 / run {attr(run.run_id)} ({attr(run.path)})">'
        f"실행 <code>{text(run.run_id)}</code></span>"
    )
    if found.changed:
        parts.append(
            '<span class="runbook-cell__changed" title="이 셀의 코드가 그 실행 이후 바뀌었습니다 / '
            'changed since it was last run">마지막 실행 이후 변경됨</span>'
        )
    elif found.changed is None:
        parts.append(
            '<span class="runbook-cell__hint" title="이 보고서에는 셀 코드의 해시가 없습니다 / '
            'the report predates source hashes">변경 여부 알 수 없음</span>'
        )
    html = f'<div class="runbook-cell__evidence">{" ".join(parts)}</div>'
    if result.status in (FAILED, TIMED_OUT):
        html += _failure(result.first_error, result.tail, result.exit_code)
    return html


def _failure(first_error: str | None, tail: tuple[str, ...], exit_code: int | None) -> str:
    out = '<div class="runbook-cell__failure">'
    code = f" (종료 코드 {exit_code})" if exit_code is not None else ""
    if first_error:
        out += f'<p class="runbook-cell__error"><span>첫 오류{code}</span> <code>{text(first_error)}</code></p>'
    if tail:
        lines = "\n".join(text(line) for line in tail)
        out += (
            f'<details class="runbook-cell__tail failure"><summary>마지막 {len(tail)}줄 (마스킹됨)</summary>'
            f'<pre class="runbook-plain">{lines}</pre></details>'
        )
    return out + "</div>"


def _spans(parts: Sequence[str]) -> str:
    """``parts`` joined by spaces, each in a ``<span>`` (the CSS wraps the line only between them); the text,
    and so what the copy button copies, is the plain command."""
    return " ".join(f"<span>{text(part)}</span>" for part in parts)


def render_card(book: Runbook, cell: Cell, code_html: str, runbook_path: str, found: Evidence | None = None) -> str:
    """Wrap ``code_html`` (the normal highlighter's output for ``cell``) in the cell's card."""
    found = found or Evidence(UNVERIFIED)
    head: list[str] = []
    if cell.id:
        head.append(f'<a class="runbook-cell__id" href="#{attr(cell.id)}" title="셀 id / cell id">#{text(cell.id)}</a>')
    else:
        head.append('<span class="runbook-cell__id runbook-cell__id--missing">(id 없음)</span>')
    if cell.danger:
        head.append(
            '<span class="runbook-cell__badge runbook-cell__badge--danger" '
            'title=".danger · 실행 전에 확인을 요청합니다 (--yes로 생략) / asks for confirmation before it runs">'
            "⚠ 위험: 실행 전 확인</span>"
        )
    for modifier, label, tip in _chips(cell):
        chip = f"runbook-cell__opt runbook-cell__opt--{modifier}"
        head.append(f'<span class="{chip}" title="{attr(tip)}">{text(label)}</span>')
    section = _section_link(book, cell)
    if section:
        head.append(section)

    if cell.id:
        needs = required_vars(book)
        command = _spans(_command_parts(runbook_path, cell.id, needs))
        note = ""
        if needs:
            names = ", ".join(f"<code>&lt;{text(v.name)}&gt;</code>" for v in needs)
            helps = "; ".join(
                f"{text(v.name)}: {text(v.help)}" if len(needs) > 1 else text(v.help) for v in needs if v.help
            )
            note = f'<span class="runbook-cell__needs">{names} 자리에 값을 넣습니다' + (f" ({helps})" if helps else "")
            note += "</span>"
        run = (
            '<div class="runbook-cell__run"><span class="runbook-cell__run-label" title="run this cell alone">'
            f"이 셀만 실행</span>{note}<pre><code>{command}</code></pre></div>"
        )
    else:
        run = (
            '<div class="runbook-cell__run runbook-cell__run--missing">'
            "id가 없어 이 셀만 실행할 수 없습니다 (<code>{#id}</code>를 붙이세요)</div>"
        )

    classes = "runbook-cell runbook-cell--danger" if cell.danger else "runbook-cell"
    data = f' data-runbook-status="{attr(found.status)}"'
    if found.changed:
        data += ' data-runbook-changed="true"'
    # The anchor sits on the header, not on the card: Material names each code block after its closest
    # ancestor with an id, and two blocks under one id would make both copy buttons copy the first block.
    anchor = f' id="{attr(cell.id)}"' if cell.id else ""
    return (
        f'<div class="{classes}" data-runbook-cell="{attr(cell.label)}" data-lang="{attr(cell.lang)}"{data}>'
        f'<div class="runbook-cell__head"{anchor}>{" ".join(head)}</div>'
        f"{_evidence(cell, found)}{code_html}{run}</div>"
    )
