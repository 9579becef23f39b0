"""Small pieces of the site's HTML shared by the cards, the page summary and the release history.

Every value read from a report or a release record goes through :func:`text` (or :func:`attr`): it is
shown as characters, never as markup. Labels are Korean first; the English wording is in ``title``.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone
from html import escape

from runbook_exec.records.evidence import UNVERIFIED
from runbook_exec.records.results import FAILED, PASSED, SKIPPED, TIMED_OUT

# Korea has had no daylight saving time since 1988 (the same fixed offset as release.log uses).
KST = timezone(timedelta(hours=9), "KST")

# (label, mark, English title) per status a card or a summary row can have.
STATUS = {
    PASSED: ("통과", "✓", "passed"),
    FAILED: ("실패", "✗", "failed"),
    TIMED_OUT: ("시간 초과", "◷", "timed out"),
    SKIPPED: ("건너뜀", "–", "skipped"),
    UNVERIFIED: ("아직 검증되지 않음", "○", "not yet verified: no run report covers this cell"),
    "interrupted": ("중단됨", "■", "interrupted"),
}
REASON = {"refused": ("거부됨", "declined at the confirmation"), "interrupted": ("중단됨", "interrupted")}

# C0 controls (but tab and newline) and DEL: never emitted. Python-Markdown's placeholders are made of
# STX/ETX, so a report holding them must not reach a page as such.
_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def text(value: object) -> str:
    """``value`` as HTML text: escaped, control characters shown as ``\\xNN``."""
    return escape(_CONTROLS.sub(lambda m: f"\\x{ord(m.group()):02x}", str(value)), quote=True)


def attr(value: object) -> str:
    """``value`` for a double-quoted attribute (the same escaping; newlines kept as spaces)."""
    return text(str(value).replace("\n", " "))


def when(moment: datetime | None, seconds: bool = False) -> str:
    """A ``<time>``: KST shown, UTC (and KST with seconds) in the title."""
    if moment is None:
        return '<span class="runbook-when">시각 없음</span>'
    aware = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    utc, kst = aware.astimezone(UTC), aware.astimezone(KST)
    shown = kst.strftime("%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M")
    title = f"{utc.strftime('%Y-%m-%d %H:%M:%S')} UTC · {kst.strftime('%Y-%m-%d %H:%M:%S')} KST"
    return f'<time class="runbook-when" datetime="{attr(utc.isoformat())}" title="{attr(title)}">{shown} KST</time>'


def duration(seconds: float) -> str:
    """``0.4초``, ``12초``, ``4분 05초``, ``1시간 02분``."""
    if seconds < 10:
        return f"{seconds:.1f}초"
    whole = round(seconds)
    if whole < 60:
        return f"{whole}초"
    if whole < 3600:
        return f"{whole // 60}분 {whole % 60:02d}초"
    return f"{whole // 3600}시간 {whole % 3600 // 60:02d}분"


def status_badge(status: str, reason: str | None = None, extra: str = "") -> str:
    """The coloured status label (``통과``, ``실패 (거부됨)``, ...)."""
    label, mark, english = STATUS.get(status, (status, "", status))
    if reason in REASON:
        label = f"{label} ({REASON[reason][0]})"
        english = f"{english} ({REASON[reason][1]})"
    title = f"{extra} / {english}" if extra else english
    return (
        f'<span class="runbook-status runbook-status--{attr(status)}" title="{attr(title)}">'
        f'<span aria-hidden="true">{mark}</span> {text(label)}</span>'
    )
