"""release.log: records render from the real template, append atomically, and read back (TAG_PREV)."""

from __future__ import annotations

import multiprocessing
import os
import secrets
import signal
import subprocess
import sys
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from runbook_exec.doc.document import Runbook, parse
from runbook_exec.errors import RunbookError
from runbook_exec.records import release_log
from runbook_exec.records.results import FAILED, PASSED, CellResult, RunReport
from runbook_exec.secrets.masking import Redactor, Secret

from conftest import FIXTURES, ROOT

TEMPLATE = ROOT / "ops" / "release.log.template"
DEFAULT_TEMPLATE = ROOT / "runbook_exec" / "templates" / "release.log.j2"
BOOK_PATH = FIXTURES / "release_log" / "book.md"


def _book() -> Runbook:
    return parse(str(BOOK_PATH))


def _report(
    book: Runbook,
    status: str,
    cells: list[str],
    variables: dict[str, str],
    tail: tuple[str, ...] = (),
    first_error: str | None = None,
) -> RunReport:
    """A report in which every named cell passed, except the last one when the run failed."""
    start = datetime(2026, 1, 14, 1, 2, 3, tzinfo=UTC)
    lines = {c.id: c for c in book.cells if c.id}
    results = []
    for n, cid in enumerate(cells):
        failed = status == FAILED and n == len(cells) - 1
        cell = lines[cid]
        results.append(
            CellResult(
                id=cid,
                label=cid,
                section=cell.section,
                line=cell.line,
                when="success",
                status=FAILED if failed else PASSED,
                exit_code=7 if failed else 0,
                attempts=1,
                duration_s=0.25,
                started_at=start,
                first_error=first_error if failed else None,
                tail=tail if failed else (),
            )
        )
    return RunReport(
        runbook=book.path,
        runbook_sha256=book.sha256,
        status=status,
        started_at=start,
        finished_at=start + timedelta(seconds=42),
        selection=("section:rehearsal",),
        cells=tuple(results),
        variables=variables,
        operator="operator1",
        host="host1",
        run_dir=".runbook/runs/20260114T010203.000000Z",
        transcript=".runbook/runs/20260114T010203.000000Z/transcript.log",
        exit_code=0 if status == PASSED else 1,
    )


ALL_CELLS = [
    "rehearsal-preflight",
    "compose-up",
    "compose-ps",
    "wait-healthy",
    "smoke-front",
    "smoke-openapi",
    "smoke-auth",
    "smoke-restarts",
]


def test_success_record_ticks_every_observed_item() -> None:
    book = _book()
    report = _report(book, PASSED, ALL_CELLS, {"TAG": "2026.01.14", "TAG_PREV": "2026.01.13"})
    text = release_log.render(TEMPLATE, report, book, {})
    assert text.startswith("=== runbook-exec record ")
    assert "TAG: 2026.01.14" in text and "TAG_PREV: 2026.01.13" in text
    assert "2026-01-14 10:02:03 KST / 2026-01-14 01:02:03 UTC" in text
    assert "operator1 @ host1" in text and book.sha256 in text
    assert "Minimum Failure Record\n" not in text
    assert "(not run)" not in text and "[ ]" not in text
    checklist = [line for line in text.splitlines() if line.startswith("- [")]
    assert len(checklist) == 10 and all(line.startswith("- [x]") for line in checklist)
    for cid in ALL_CELLS:
        assert f"- {cid} [" in text


@pytest.mark.parametrize(
    "template", [TEMPLATE, ROOT / "runbook_exec" / "templates" / "release.log.j2"], ids=["ops", "default"]
)
def test_a_targets_record_names_the_target_and_its_engine(template: Path, tmp_path: Path) -> None:
    book = _book()
    plain = _report(book, PASSED, ["compose-up"], {"TAG": "2026.01.14"})
    targeted = replace(plain, target="prod-1", engine_host="srv-11")
    log = tmp_path / "release.log"
    for report in (plain, targeted):
        release_log.append(log, release_log.render(template, report, book, {}))
    first, second = release_log.records(log)
    # A record of a run without --target keeps its former shape.
    assert "target" not in first.meta and "engine_host" not in first.meta and first.target is None
    assert (second.target, second.meta["engine_host"]) == ("prod-1", "srv-11")
    assert "prod-1" in second.body and "srv-11" in second.body
    assert "prod-1" not in first.body


def test_failure_record_has_the_minimum_failure_record() -> None:
    book = _book()
    tail = tuple(f"output line {i}" for i in range(1, 31))
    report = _report(
        book,
        FAILED,
        ["rehearsal-preflight", "compose-up"],
        {"TAG": "2026.01.15", "TAG_PREV": "2026.01.14"},
        tail=tail,
        first_error="ERROR: pull access denied for backend",
    )
    text = release_log.render(TEMPLATE, report, book, {"rollback_possible": True})
    assert "결과: 실패" in text
    assert f"실패 단계: compose-up ({book.path}:" in text
    assert "상태/종료 코드: failed / 7" in text
    assert "첫 에러: ERROR: pull access denied for backend" in text
    assert "전체 로그: .runbook/runs/20260114T010203.000000Z/transcript.log" in text
    assert "롤백 가능: 예" in text
    quoted = [line for line in text.splitlines() if line.startswith("    | ")]
    assert quoted == [f"    | output line {i}" for i in range(11, 31)]
    # Preflight passed, the rest never ran: ticked from what the run observed.
    assert "- [x] `.env.prod`에 `.env.sample`의 모든 키가 존재한다" in text
    assert "- [ ] `GET /` (정적 서빙) (not run)" in text
    [record] = _roundtrip(text)
    assert record.status == FAILED and record.meta["failed_step"] == "compose-up"
    assert record.deployed is None


def test_rollback_unknown_without_tag_prev() -> None:
    book = _book()
    report = _report(book, FAILED, ["compose-up"], {"TAG": "2026.01.15"}, first_error="boom")
    text = release_log.render(TEMPLATE, report, book, {"rollback_possible": True})
    assert "롤백 가능: 아니오 (TAG_PREV unknown" in text
    assert "TAG_PREV: (없음)" in text


def test_strict_undefined_names_the_variable(tmp_path: Path) -> None:
    template = tmp_path / "t.template"
    template.write_text("TAG={{ TAG }} {{ no_such_field }}\n", encoding="utf-8")
    book = _book()
    with pytest.raises(RunbookError, match="no_such_field"):
        release_log.render(template, _report(book, PASSED, ["compose-up"], {"TAG": "x"}), book, {})


def test_mask_is_a_second_guard_and_the_record_stays_sealed(tmp_path: Path) -> None:
    secret = secrets.token_urlsafe(24)
    book = _book()
    report = _report(
        book, FAILED, ["compose-up"], {"TAG": "2026.01.15"}, tail=(f"password={secret}",), first_error=secret
    )
    redactor = Redactor([Secret("POSTGRES_PASSWORD", secret)])
    text = release_log.render(TEMPLATE, report, book, {}, mask=redactor.mask)
    assert secret not in text
    log = tmp_path / "release.log"
    release_log.append(log, text)
    # The runner may mask again after rendering; append re-seals a framed record.
    report2 = _report(book, FAILED, ["compose-up"], {"TAG": "2026.01.16"}, tail=(secret,), first_error="x")
    release_log.append(log, release_log.render(TEMPLATE, report2, book, {}), mask=redactor.mask)
    assert secret.encode() not in log.read_bytes()
    assert [r.variables["TAG"] for r in release_log.records(log)] == ["2026.01.15", "2026.01.16"]


def test_output_lines_cannot_forge_a_frame(tmp_path: Path) -> None:
    book = _book()
    forged = "=== runbook-exec record x end sha256=" + "0" * 64 + " ==="
    report = _report(
        book, FAILED, ["compose-up"], {"TAG": "2026.01.15"}, tail=(forged, "=== runbook-exec record y begin ===")
    )
    log = tmp_path / "release.log"
    release_log.append(log, release_log.render(TEMPLATE, report, book, {}))
    [record] = release_log.records(log)
    assert "TAG: 2026.01.15" in record.body


def test_append_refuses_a_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(RunbookError, match="does not exist"):
        release_log.append(tmp_path / "nope" / "release.log", "x\n")
    assert not (tmp_path / "nope").exists()


def test_append_never_touches_earlier_bytes(tmp_path: Path) -> None:
    log = tmp_path / "release.log"
    log.write_bytes(b"hand-written note without a newline")
    before = log.read_bytes()
    book = _book()
    release_log.append(
        log, release_log.render(TEMPLATE, _report(book, PASSED, ["compose-up"], {"TAG": "a1b2c3d"}), book, {})
    )
    assert log.read_bytes().startswith(before)
    assert release_log.last_successful(log) == "a1b2c3d"


def _roundtrip(text: str) -> list[release_log.Record]:
    return list(release_log._parse(text.split("\n")))


def _cases() -> list[Any]:
    data = yaml.safe_load((FIXTURES / "release_log" / "tag-prev.yaml").read_text(encoding="utf-8"))
    return [pytest.param(case, id=case["name"]) for case in data]


@pytest.mark.parametrize("case", _cases())
def test_tag_prev_is_the_last_successful_tag(case: dict[str, Any], tmp_path: Path) -> None:
    book = _book()
    log = tmp_path / "release.log"
    for run in case["runs"]:
        variables = {"TAG": str(run["TAG"])}
        if run.get("TAG_PREV"):
            variables["TAG_PREV"] = str(run["TAG_PREV"])
        report = _report(book, run["status"], run["cells"], variables, first_error="e")
        if run.get("target"):
            report = replace(report, target=run["target"], engine_host=f"engine-{run['target']}")
        release_log.append(log, release_log.render(TEMPLATE, report, book, {}))
    expected = case["expect"]
    this_run = str(case["this_run"]) if "this_run" in case else None
    found = release_log.last_successful(log, "TAG", exclude=this_run, target=case.get("target"))
    assert found == (None if expected is None else str(expected))


def test_missing_log_has_no_records(tmp_path: Path) -> None:
    assert release_log.records(tmp_path / "release.log") == []
    assert release_log.last_successful(tmp_path / "release.log") is None


# -- concurrency and crashes (real processes) ------------------------------------------------------------

_WRITER = """
import sys
from runbook_exec.records import release_log
log, n, size, first = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
for i in range(first, first + n):
    begin = "=== runbook-exec record r%06d begin ===\\n" % i
    meta = 'meta: {"status": "passed", "vars": {"TAG": "t%06d"}}\\n' % i
    body = ("x" * 99 + "\\n") * (size // 100)
    end = "=== runbook-exec record r%06d end sha256=%s ===\\n" % (i, "0" * 64)
    release_log.append(log, begin + meta + body + end)
    print(i, flush=True)
"""


def _append_one(args: tuple[str, int, Any]) -> None:
    log, i, barrier = args
    barrier.wait()
    body = f"record {i}\n" + ("y" * 127 + "\n") * 800  # ~100 KiB: far beyond any atomic pipe write size
    text = (
        f"=== runbook-exec record p{i:03d} begin ===\n"
        f'meta: {{"status": "passed", "vars": {{"TAG": "t{i:03d}"}}}}\n'
        f"{body}=== runbook-exec record p{i:03d} end sha256={'0' * 64} ===\n"
    )
    release_log.append(log, text)


def test_fifty_concurrent_appends_lose_nothing(tmp_path: Path) -> None:
    log = str(tmp_path / "release.log")
    ctx = multiprocessing.get_context()
    barrier = ctx.Barrier(50)
    procs = [ctx.Process(target=_append_one, args=((log, i, barrier),)) for i in range(50)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
        assert p.exitcode == 0
    found = release_log.records(log)
    assert sorted(r.run_id for r in found) == [f"p{i:03d}" for i in range(50)]
    assert all(r.body.startswith(f"record {int(r.run_id[1:])}\n") for r in found)


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX")
def test_a_writer_killed_mid_run_leaves_earlier_records_intact(tmp_path: Path) -> None:
    log = tmp_path / "release.log"
    book = _book()
    for tag in ("2026.01.13", "2026.01.14"):
        release_log.append(
            log, release_log.render(TEMPLATE, _report(book, PASSED, ["compose-up"], {"TAG": tag}), book, {})
        )
    before = log.read_bytes()
    proc = subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(log), "100000", str(2 << 20), "0"],
        stdout=subprocess.PIPE,
        cwd=ROOT,
    )
    assert proc.stdout is not None
    proc.stdout.readline()  # at least one record is in
    time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    data = log.read_bytes()
    assert data.startswith(before)
    # Simulate the worst case as well: a record torn in the middle of its bytes.
    with log.open("ab") as f:
        f.write(
            b'=== runbook-exec record torn begin ===\nmeta: {"status": "passed", "vars": {"TAG": "torn"}}\nhalf a li'
        )
    found = release_log.records(log)
    assert [r.variables["TAG"] for r in found[:2]] == ["2026.01.13", "2026.01.14"]
    assert all(r.run_id != "torn" for r in found)
    # Writers after the crash still produce parseable records, and TAG_PREV skips the torn one.
    release_log.append(
        log, release_log.render(TEMPLATE, _report(book, PASSED, ["compose-up"], {"TAG": "2026.01.15"}), book, {})
    )
    assert release_log.records(log)[-1].variables["TAG"] == "2026.01.15"
    assert release_log.last_successful(log) == "2026.01.15"


def test_terminal_control_sequences_are_dropped_from_evidence() -> None:
    book = _book()
    tail = ("\x1b[?25h\x1b[1A\x1b[0G[+] Running 5/6", "\x1b[32m✔\x1b[0m Container db-1  \x1b[32mHealthy\x1b[0m   ")
    report = _report(
        book, FAILED, ["compose-up"], {"TAG": "2026.01.15"}, tail=tail, first_error="\x1b[31m✘\x1b[0m boom"
    )
    text = release_log.render(TEMPLATE, report, book, {})
    assert "\x1b" not in text
    assert "첫 에러: ✘ boom\n" in text and "    | ✔ Container db-1  Healthy\n" in text
