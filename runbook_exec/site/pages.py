"""HTML added to the site around the cards: the summary at the top of a runbook page and the release history.

Both are built from the masked artifacts only (run reports, release.log records) and inserted after
Markdown has run, so nothing taken from them is ever read as Markdown or HTML: every value goes through
:func:`~runbook_exec.site.formatting.text`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from runbook_exec.doc.document import Runbook
from runbook_exec.records.evidence import STATUSES, UNVERIFIED, Evidence, SectionRun
from runbook_exec.site.formatting import STATUS, attr, duration, status_badge, text, when

if TYPE_CHECKING:
    from runbook_exec.records.release_log import Record

HISTORY_TITLE = "배포 이력"
_MFR = re.compile(r"^(#+)\s*Minimum Failure Record\b", re.IGNORECASE)


# -- the summary at the top of a runbook page -----------------------------------------------------------


def summary(
    book: Runbook,
    found: Mapping[str, Evidence],
    sections: Sequence[SectionRun],
    reports: int,
    patterns: Sequence[str],
    history_url: str | None,
) -> str:
    """Counts of the cards by status, and the last run of each section that has one."""
    counts = {s: 0 for s in (*STATUSES, UNVERIFIED)}
    changed = 0
    for item in found.values():
        counts[item.status] = counts.get(item.status, 0) + 1
        changed += bool(item.changed)
    parts = [f"<span>실행 셀 {len(found)}개</span>"]
    for status, n in counts.items():
        if n:
            label, mark, english = STATUS[status]
            parts.append(
                f'<span class="runbook-status runbook-status--{status}" data-runbook-count="{status}" '
                f'title="{attr(english)}">{mark} {label} {n}</span>'
            )
    if changed:
        parts.append(
            f'<span class="runbook-cell__changed" data-runbook-count="changed" '
            f'title="changed since it was last run">마지막 실행 이후 변경됨 {changed}</span>'
        )
    out = [
        f'<div class="runbook-summary" data-runbook-summary="{attr(book.path)}">',
        '<p class="runbook-summary__title">검증 현황 <span class="runbook-cell__hint">'
        "/ what the last runs verified</span></p>",
        f'<p class="runbook-summary__counts">{" ".join(parts)}</p>',
    ]
    if sections:
        out.append('<ul class="runbook-runs">')
        out.extend(_section_row(book, s) for s in sections)
        out.append("</ul>")
    else:
        out.append('<p class="runbook-cell__hint">섹션을 골라 실행한 기록이 아직 없습니다 (--section).</p>')
    source = ", ".join(f"<code>{text(p)}</code>" for p in patterns) or "(없음)"
    tail = f"<span>실행 보고서 {reports}개: {source}</span>"
    if history_url is not None:
        tail += f' <a href="{attr(history_url)}">{HISTORY_TITLE} (release.log) 보기</a>'
    out.append(f'<p class="runbook-summary__source runbook-cell__hint">{tail}</p></div>')
    return "".join(out)


def _section_row(book: Runbook, row: SectionRun) -> str:
    section = book.section(row.section)
    title = section.title if section else row.section
    run = row.run
    items = [status_badge(row.status, "interrupted" if run.interrupted else None), when(run.started_at)]
    if run.tag:
        items.append(f"<span>TAG <code>{text(run.tag)}</code></span>")
    items.append(f'<span title="통과한 셀 / cells passed">통과 {row.passed}/{row.total}</span>')
    items.append(f'<span title="소요 시간 / duration">{duration(row.duration_s)}</span>')
    items.append(f'<span title="실행 / run ({attr(run.path)})">실행 <code>{text(run.run_id)}</code></span>')
    return (
        f'<li data-runbook-section="{attr(row.section)}" data-runbook-status="{attr(row.status)}">'
        f'<a class="runbook-runs__section" href="#{attr(row.section)}">{text(title)}</a>'
        f'<span class="runbook-runs__meta">{" ".join(items)}</span></li>'
    )


# -- the release history page ------------------------------------------------------------------------------


@dataclass(frozen=True)
class History:
    """One runbook's release log as the history page shows it."""

    runbook_path: str
    book: Runbook
    log_path: str | None  # as the front matter names it (None: the runbook keeps no release log)
    records: tuple[Record, ...] | None  # None: the log does not exist at build time
    page_url: str  # the runbook's page, relative to the history page
    problem: str | None = None


def history_markdown(paths: Sequence[str]) -> str:
    """The generated page's Markdown: its title and what it shows (records are added as HTML later)."""
    names = ", ".join(f"`{p}`" for p in paths) or "(없음)"
    return (
        f"# {HISTORY_TITLE} / Release history\n\n"
        f"런북({names})의 release.log 기록을 최신 순으로 보여 줍니다. 기록은 실행할 때 이미 마스킹되었고, 이 "
        "페이지는 기록에 없는 내용을 더하지 않습니다. 사이트를 빌드할 때 release.log가 있어야 기록이 보입니다"
        "(서버에서 빌드하거나, CI에서 리허설 뒤에 빌드).\n\n"
        "The release.log records of the runbooks, newest first, exactly as masked when they were written. "
        "They appear when the log exists at build time (a build on the server, or in CI after the rehearsal).\n"
    )


def history_html(histories: Sequence[History]) -> str:
    """Every runbook's records, newest first, each failure's Minimum Failure Record in a collapsible block."""
    out: list[str] = []
    for h in histories:
        out.append(f'<section class="runbook-history-book" data-runbook-history="{attr(h.runbook_path)}">')
        if len(histories) > 1:
            title = h.book.meta.get("title")
            name = f"{title} ({h.runbook_path})" if isinstance(title, str) and title else h.runbook_path
            out.append(f'<h2 id="history-{attr(_anchor(h.runbook_path))}">{text(name)}</h2>')
        if h.log_path is None:
            out.append(f"<p>{_code(h.runbook_path)}의 앞부분(front matter)에 <code>release_log</code>가 없습니다.</p>")
        elif h.problem:
            out.append(f'<p class="runbook-history__none">{text(h.problem)}</p>')
        elif h.records is None:
            out.append(
                f'<p class="runbook-history__none">이 빌드에는 {_code(h.log_path)} 파일이 없어 표시할 기록이 없습니다. '
                "운영 서버에서 빌드하거나 CI에서 리허설 뒤에 빌드하면 기록이 나타납니다. / "
                "No release log at build time.</p>"
            )
        elif not h.records:
            out.append(f'<p class="runbook-history__none">{_code(h.log_path)}에 읽을 수 있는 기록이 없습니다.</p>')
        else:
            out.append(
                f'<p class="runbook-history__log">{_code(h.log_path)} · 기록 {len(h.records)}건, 최신 순</p>'
                '<ol class="runbook-history">'
            )
            out.extend(f"<li>{_record(h, r)}</li>" for r in reversed(h.records))
            out.append("</ol>")
        out.append("</section>")
    return "".join(out)


def _code(value: str) -> str:
    return f"<code>{text(value)}</code>"


def _record(h: History, record: Record) -> str:
    meta = record.meta
    status = record.status if record.status in ("passed", "failed", "interrupted") else "failed"
    variables = record.variables
    tag, prev = variables.get("TAG"), variables.get("TAG_PREV")
    line = [status_badge(status)]
    line.append(f'<span class="runbook-record__tag">TAG {_code(str(tag)) if tag else "(없음)"}</span>')
    line.append(f"<span>이전 TAG(TAG_PREV) {_code(str(prev)) if prev else '(없음)'}</span>")
    kind = meta.get("kind")
    if isinstance(kind, str) and kind:
        label = text(_KINDS.get(kind, kind))
        line.append(f'<span class="runbook-record__kind" title="종류 / kind: {attr(kind)}">{label}</span>')
    deployed = record.deployed
    if deployed:
        line.append(f"<span>배포된 TAG {_code(deployed)}</span>")
    target = record.target
    if target:
        line.append(f'<span class="runbook-record__target" title="대상 / target">대상 {_code(target)}</span>')
    rows = [
        ("시작", _stamp(meta.get("started_utc"))),
        ("종료", _stamp(meta.get("finished_utc"))),
        ("작업자", _plain(meta.get("operator"))),
        ("호스트", _plain(meta.get("host"))),
    ]
    if target:
        # A run against a target: which engine it deployed to, by the name that engine gave.
        rows.append(("대상", f"{_code(target)} · 엔진 호스트 {_plain(meta.get('engine_host'))}"))
    rows.append(("섹션", _selection(h, meta.get("selection"))))
    failed = meta.get("failed_step")
    if isinstance(failed, str) and failed:
        rows.append(("실패한 셀", _cell_link(h, failed)))
    rows.append(("기록 id", _code(record.run_id)))
    dl = "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in rows)
    blocks = ""
    mfr = minimum_failure_record(record.body)
    if mfr is not None:
        blocks += (
            '<details class="runbook-record__mfr failure"><summary>최소 실패 기록 (Minimum Failure Record)</summary>'
            f'<pre class="runbook-plain">{text(mfr)}</pre></details>'
        )
    elif status != "passed" and record.body.strip():
        blocks += (
            '<details class="runbook-record__mfr failure"><summary>실패 기록 전문 (full record)</summary>'
            f'<pre class="runbook-plain">{text(record.body.strip())}</pre></details>'
        )
    if mfr is not None or status == "passed":
        blocks += (
            '<details class="runbook-record__body abstract"><summary>기록 전문 (full record)</summary>'
            f'<pre class="runbook-plain">{text(record.body.strip())}</pre></details>'
        )
    targeted = f' data-runbook-record-target="{attr(target)}"' if target else ""
    return (
        f'<article class="runbook-record" id="record-{attr(_anchor(record.run_id))}" '
        f'data-runbook-record="{attr(record.run_id)}" data-runbook-record-status="{attr(status)}"{targeted}>'
        f'<div class="runbook-record__line">{" ".join(line)}</div><dl>{dl}</dl>{blocks}</article>'
    )


_KINDS = {"deploy": "배포", "rollback": "롤백", "run": "실행"}


def minimum_failure_record(body: str) -> str | None:
    """The "Minimum Failure Record" part of a record's text (its heading to the next heading of the same or
    a higher level), or None when the record has none."""
    lines = body.split("\n")
    for i, line in enumerate(lines):
        found = _MFR.match(line.strip())
        if found is None:
            continue
        level = len(found.group(1))
        end = len(lines)
        for j in range(i + 1, len(lines)):
            head = re.match(r"^(#+)\s", lines[j])
            if head and len(head.group(1)) <= level:
                end = j
                break
        return "\n".join(lines[i:end]).strip()
    return None


def _anchor(value: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "-", value)


def _plain(value: Any) -> str:
    return text(value) if isinstance(value, str) and value else '<span class="runbook-cell__hint">(기록 없음)</span>'


def _stamp(value: Any) -> str:
    """A record's ``YYYY-MM-DD HH:MM:SS UTC`` as a ``<time>`` (KST shown); any other text as it is."""
    if not isinstance(value, str) or not value:
        return _plain(value)
    try:
        moment = datetime.strptime(value, "%Y-%m-%d %H:%M:%S UTC").replace(tzinfo=UTC)
    except ValueError:
        return text(value)
    return when(moment, seconds=True)


def _selection(h: History, value: Any) -> str:
    if not isinstance(value, list) or not value:
        return _plain(None)
    parts = []
    for item in value:
        kind, _, name = str(item).partition(":")
        section = h.book.section(name) if kind == "section" else None
        if section is not None:
            parts.append(
                f'<a href="{attr(h.page_url)}#{attr(name)}" title="--section {attr(name)}">{text(section.title)}</a>'
            )
        elif kind == "cell" and _is_cell(h.book, name):
            parts.append(f'셀 <a href="{attr(h.page_url)}#{attr(name)}">{_code(name)}</a>')
        elif kind == "all":
            parts.append("런북 전체")
        else:
            parts.append(_code(str(item)))
    return ", ".join(parts)


def _is_cell(book: Runbook, ident: str) -> bool:
    return any(c.id == ident and c.executable for c in book.cells)


def _cell_link(h: History, label: str) -> str:
    if _is_cell(h.book, label):
        return f'<a href="{attr(h.page_url)}#{attr(label)}">{_code(label)}</a>'
    return _code(label)
