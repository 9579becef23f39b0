"""The final rescan redacts only what came from cells, the runbook and the environment, inside the parsed
artifact, so every artifact stays valid and the runner's own fields stay intact (real Redactor, real files).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from xml.etree import ElementTree as ET

from runbook_exec.records.rescan import rescan
from runbook_exec.secrets.masking import Redactor, Secret

SECRET = "s3cr3t-" + os.urandom(8).hex()
COMMON = [Secret("POSTGRES_USER", "root"), Secret("YEAR", "2026"), Secret("WORD", "passed")]
STAMP = "2026-01-14T01:02:03.000000Z"


def _redactor() -> Redactor:
    return Redactor([*COMMON, Secret("DB_PASSWORD", SECRET)])


def _report() -> dict[str, object]:
    return {
        "runbook": "ops/deploy.md",
        "status": "passed",
        "interrupted": False,
        "aborted": False,
        "exit_code": 0,
        "started_at": "2026-01-14T01:02:03+00:00",
        "finished_at": "2026-01-14T01:02:04+00:00",
        "duration_s": 1.0,
        "selection": ["all"],
        "variables": {"TAG": "a1b2c3d"},
        "operator": "root",
        "host": "root",
        "run_dir": ".runbook/runs/20260114T010203.000000Z",
        "transcript": ".runbook/runs/20260114T010203.000000Z/transcript.log",
        "cells": [
            {
                "id": "up",
                "label": "up",
                "section": "rehearsal",
                "line": 2026,
                "when": "success",
                "status": "passed",
                "reason": None,
                "exit_code": 0,
                "attempts": 1,
                "duration_s": 0.5,
                "started_at": "2026-01-14T01:02:03+00:00",
                "first_error": None,
                "tail": [f"password={SECRET}", SECRET],
            }
        ],
    }


def test_json_report_keeps_the_runner_fields_and_stays_valid(tmp_path: Path) -> None:
    path = tmp_path / "report.json"
    path.write_text(json.dumps(_report(), indent=2))
    found = rescan(_redactor(), {"report": path})
    assert found == [f"{path}: contained a form of DB_PASSWORD; redacted"]
    data = json.loads(path.read_text())
    expected = _report()
    expected["cells"][0]["tail"] = ["password=***", "***"]  # type: ignore[index]
    assert data == expected  # a whole string equal to a secret became "***", the JSON is still JSON


def test_json_report_with_only_runner_fields_equal_to_common_values_is_not_a_leak(tmp_path: Path) -> None:
    path = tmp_path / "report.json"
    report = _report()
    report["cells"][0]["tail"] = ["ok"]  # type: ignore[index]
    before = json.dumps(report, indent=2)
    path.write_text(before)
    assert rescan(_redactor(), {"report": path}) == []
    assert path.read_text() == before


def test_junit_keeps_counts_and_times_and_stays_valid(tmp_path: Path) -> None:
    path = tmp_path / "junit.xml"
    path.write_text(
        "<?xml version='1.0' encoding='utf-8'?>\n<testsuites>\n"
        '  <testsuite name="ops/deploy.md" tests="2026" failures="1" skipped="0" time="2026.000" '
        f'timestamp="{STAMP}">\n'
        '    <testcase classname="rehearsal" name="up" time="0.500" file="ops/deploy.md" line="2026">\n'
        f'      <failure message="failed (exit 1)" type="failed">passed\nkey={SECRET}</failure>\n'
        "    </testcase>\n  </testsuite>\n</testsuites>\n"
    )
    found = rescan(_redactor(), {"junit": path})
    assert found == [f"{path}: contained a form of DB_PASSWORD, WORD; redacted"]
    root = ET.parse(path).getroot()
    suite = root.find("testsuite")
    assert suite is not None and suite.get("tests") == "2026" and suite.get("timestamp") == STAMP
    failure = root.find("testsuite/testcase/failure")
    assert failure is not None and failure.text == "***\nkey=***"  # cell output: "passed" is masked there
    assert failure.get("message") == "failed (exit 1)"


def test_transcript_redacts_only_the_output_part_of_cell_lines(tmp_path: Path) -> None:
    path = tmp_path / "transcript.log"
    lines = [
        f"{STAMP} runner | [1/1] rehearsal › up",
        f"{STAMP} up | root logged in with {SECRET}",
        f"{STAMP} up | build 2026 done",
        f"{STAMP} runner | ✓ up passed in 2026.00 s",
        f"{STAMP} runner | PASSED: 1 passed in 0.50 s",
    ]
    path.write_text("\n".join(lines) + "\n")
    found = rescan(_redactor(), {"transcript": path})
    assert found == [f"{path}: contained a form of DB_PASSWORD, POSTGRES_USER, YEAR; redacted"]
    assert path.read_text().splitlines() == [
        lines[0],
        f"{STAMP} up | *** logged in with ***",
        f"{STAMP} up | build *** done",
        *lines[3:],
    ]


def test_transcript_line_longer_than_a_window_is_scanned_across_windows(tmp_path: Path) -> None:
    path = tmp_path / "transcript.log"
    filler = b"x" * ((256 << 10) - 40)
    line = f"{STAMP} big | ".encode() + filler + b" " + SECRET.encode() + b" " + filler + b"\n"
    path.write_bytes(line + f"{STAMP} runner | done\n".encode())
    assert rescan(_redactor(), {"transcript": path}) == [f"{path}: contained a form of DB_PASSWORD; redacted"]
    data = path.read_bytes()
    assert SECRET.encode() not in data
    assert data == f"{STAMP} big | ".encode() + filler + b" *** " + filler + b"\n" + f"{STAMP} runner | done\n".encode()


def test_a_file_not_in_its_format_is_searched_whole_and_state_is_never_scanned(tmp_path: Path) -> None:
    report, state = tmp_path / "report.json", tmp_path / "state.jsonl"
    report.write_text("{not json " + SECRET)
    state.write_text(json.dumps({"exports": f"declare -x DSN={SECRET}"}))
    found = rescan(_redactor(), {"report": report, "state": state})
    assert found == [f"{report}: contained a form of DB_PASSWORD; redacted"]
    assert SECRET not in report.read_text()
    assert SECRET in state.read_text()  # the resume state keeps values in clear (mode 0600, never shown)


def test_transcript_of_many_blocks_with_a_common_value_in_every_timestamp(tmp_path: Path) -> None:
    path = tmp_path / "transcript.log"
    clean = f"{STAMP} up | line of output\n".encode() * 20000  # ~1 MB: several blocks, 2026 in every prefix
    path.write_bytes(clean + f"{STAMP} up | late {SECRET}\n".encode() + clean)
    assert rescan(_redactor(), {"transcript": path}) == [f"{path}: contained a form of DB_PASSWORD; redacted"]
    assert path.read_bytes() == clean + f"{STAMP} up | late ***\n".encode() + clean
    path.write_bytes(clean)
    assert rescan(_redactor(), {"transcript": path}) == []
