"""The JUnit file is written out directly; ElementTree (parse, then serialize with indent) is the oracle:
same bytes for reports full of characters XML must escape, empty suites and rollout targets."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from xml.etree import ElementTree as ET

import pytest

from runbook_exec.records.report import _xml_text, junit_xml
from runbook_exec.records.results import (
    FAILED,
    INTERRUPTED,
    PASSED,
    REFUSED,
    SKIPPED,
    TIMED_OUT,
    CellResult,
    RunReport,
)

_PIECES = ["a", " ", "&", "<", ">", '"', "'", "\r", "\n", "\t", "é", "\x1b[31m", "\x00", "\ufffe", "]]>", "xyz"]
_STATUSES = [PASSED, FAILED, TIMED_OUT, SKIPPED, REFUSED, INTERRUPTED]


def _element_tree(report: RunReport) -> bytes:
    """The JUnit document as ElementTree writes it."""
    suite = ET.Element(
        "testsuite",
        name=f"{report.runbook} [{report.target}]" if report.target else report.runbook,
        tests=str(len(report.cells)),
        failures=str(sum(c.status in (FAILED, TIMED_OUT, REFUSED, INTERRUPTED) for c in report.cells)),
        skipped=str(sum(c.status == SKIPPED for c in report.cells)),
        time=f"{(report.finished_at - report.started_at).total_seconds():.3f}",
        timestamp=report.started_at.isoformat(),
    )
    if report.target:
        suite.set("hostname", report.engine_host or "")
        props = ET.SubElement(suite, "properties")
        ET.SubElement(props, "property", name="target", value=report.target)
        ET.SubElement(props, "property", name="engine_host", value=report.engine_host or "")
    for cell in report.cells:
        case = ET.SubElement(
            suite,
            "testcase",
            classname=cell.section or report.runbook,
            name=cell.label,
            time=f"{cell.duration_s:.3f}",
            file=report.runbook,
            line=str(cell.line),
        )
        if cell.status == SKIPPED:
            ET.SubElement(case, "skipped", message=f"when={cell.when}")
        elif cell.status == REFUSED:
            ET.SubElement(case, "failure", message="refused at the confirmation prompt (not run)", type=REFUSED)
        elif cell.status != PASSED:
            message = f"{cell.status}" + (f" (exit {cell.exit_code})" if cell.exit_code is not None else "")
            failure = ET.SubElement(case, "failure", message=message, type=cell.status)
            failure.text = _xml_text("\n".join(cell.tail))
    root = ET.Element("testsuites")
    root.append(suite)
    ET.indent(root)
    return ET.tostring(root, encoding="utf-8", xml_declaration=True) + b"\n"


def _text(rng: random.Random, surrogates: bool = True) -> str:
    pieces = [*_PIECES, "\ud800"] if surrogates else _PIECES
    return "".join(rng.choice(pieces) for _ in range(rng.randrange(6)))


def _report(rng: random.Random) -> RunReport:
    start = datetime(2026, 1, 14, 1, 2, 3, tzinfo=UTC)
    cells = tuple(
        CellResult(
            id=rng.choice([None, _text(rng)]),
            label=_text(rng),
            section=rng.choice([None, "", _text(rng)]),
            line=rng.randrange(100),
            when=_text(rng),
            status=rng.choice(_STATUSES),
            exit_code=rng.choice([None, 0, 3]),
            attempts=1,
            duration_s=rng.random() * 9,
            tail=tuple(_text(rng, surrogates=False) for _ in range(rng.randrange(3))),
        )
        for _ in range(rng.randrange(4))
    )
    return RunReport(
        runbook=_text(rng),
        runbook_sha256="0" * 64,
        status=PASSED,
        started_at=start,
        finished_at=start + timedelta(seconds=rng.random() * 100),
        selection=(),
        cells=cells,
        target=rng.choice([None, "", _text(rng)]),
        engine_host=rng.choice([None, _text(rng)]),
    )


@pytest.mark.parametrize("seed", range(5))
def test_junit_bytes_match_element_tree(seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(400):
        report = _report(rng)
        assert junit_xml(report) == _element_tree(report), report
