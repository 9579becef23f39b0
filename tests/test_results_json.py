"""A cell's JSON text in the report is written field by field; it must stay byte for byte what ``json.dumps`` of
``to_json()`` writes (a field added to one and not the other fails here)."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta, timezone

import pytest

from runbook_exec.records.report import dump_json, report_json
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

_TEXTS = ["", "plain", 'quote " and \\ backslash', "탭\t줄\n바꿈", "\x00\x1f\x7f", "\ud800 lone surrogate", "💥", "***"]
_STATUSES = [PASSED, FAILED, TIMED_OUT, SKIPPED, REFUSED, INTERRUPTED]


def _random_result(rng: random.Random, surrogates: bool = True) -> CellResult:
    texts = _TEXTS if surrogates else [t for t in _TEXTS if "\ud800" not in t]

    def text() -> str:
        return rng.choice(texts) + "".join(chr(rng.choice([rng.randrange(32, 127), rng.randrange(0x80, 0x3000)]))
                                            for _ in range(rng.randrange(6)))  # fmt: skip

    def maybe(value: str) -> str | None:
        return None if rng.random() < 0.3 else value

    zone = rng.choice([UTC, timezone(timedelta(hours=9))])
    return CellResult(
        id=maybe(text()),
        label=text(),
        section=maybe(text()),
        line=rng.randrange(1, 100_000),
        when=rng.choice(["success", "failure", "always"]),
        status=rng.choice(_STATUSES),
        exit_code=rng.choice([None, 0, 1, 2, 127, 130, 255]),
        attempts=rng.randrange(0, 5),
        duration_s=rng.choice([0.0, 1e-7, 0.1234567891, 12.5, 3600.000001, rng.random() * 10 ** rng.randrange(8)]),
        started_at=rng.choice([None, datetime(2026, 12, 2, 18, 0, rng.randrange(60), rng.randrange(10**6), zone)]),
        first_error=maybe(text()),
        tail=tuple(text() for _ in range(rng.randrange(4))),
        source_sha256=maybe("ab" * 32),
    )


def test_json_text_is_what_json_dumps_writes() -> None:
    rng = random.Random(20261202)
    for _ in range(3000):
        result = _random_result(rng)
        assert result.json_text == json.dumps(result.to_json(), ensure_ascii=False), result


@pytest.mark.parametrize(
    "odd",
    [{"duration_s": float("nan")}, {"duration_s": float("inf")}, {"line": True}, {"exit_code": 1.0}, {"duration_s": 2}],
    ids=["nan", "inf", "bool-line", "float-exit", "int-duration"],
)
def test_values_not_as_typed_still_match(odd: dict[str, object]) -> None:
    base = {"id": "a", "label": "a", "section": None, "line": 1, "when": "success", "status": PASSED}
    result = CellResult(**{**base, **odd})  # type: ignore[arg-type]
    assert result.json_text == json.dumps(result.to_json(), ensure_ascii=False)


@pytest.mark.parametrize("count", [0, 1, 200, 201, 1000])
@pytest.mark.parametrize("target", [None, "web-2"])
def test_a_report_joined_from_cell_texts_is_what_dump_json_writes(count: int, target: str | None) -> None:
    rng = random.Random(count)
    start = datetime(2026, 12, 2, 18, 0, tzinfo=UTC)
    report = RunReport(
        runbook="ops/deploy.md",
        runbook_sha256="cd" * 32,
        status=rng.choice([PASSED, FAILED, INTERRUPTED]),
        started_at=start,
        finished_at=start + timedelta(seconds=rng.random() * 100),
        selection=("rehearsal",),
        # (A report's bytes are UTF-8: a run's texts hold no lone surrogate; the cell text test has them.)
        cells=tuple(_random_result(rng, surrogates=False) for _ in range(count)),
        variables={"TAG": "2026.12.02", "메모": 'q"uote'},
        operator="ops",
        host="web-1",
        exit_code=rng.choice([0, 1, None]),
        target=target,
    )
    assert report_json(report) == dump_json(report.to_json())
