"""The runner's own fields are not secrets: whatever common values the env file holds (the operator's
user name, the year, ``passed``, ``failed``, the host name), a passing run exits 0 with intact, valid
artifacts, and what came from cells is still masked everywhere."""

from __future__ import annotations

import getpass
import json
import os
import shutil
import socket
from datetime import UTC, datetime
from pathlib import Path
from xml.etree import ElementTree as ET

from runbook_exec.records import release_log
from runbook_exec.records.report import STAMP_LEN

from conftest import FIXTURES, run_cli

ARTIFACTS = ["--report", "r.json", "--junit", "j.xml", "--transcript", "t.log"]


def test_common_values_in_the_env_file_never_break_a_passing_run(tmp_path: Path) -> None:
    work = tmp_path / "fields"
    work.mkdir()
    shutil.copy(FIXTURES / "records" / "common-values.md", work)
    (work / "release.log").touch()
    user, host, year = getpass.getuser(), socket.gethostname(), str(datetime.now(UTC).year)
    password = "pw-" + os.urandom(12).hex()
    values = {
        "POSTGRES_USER": user,  # POSTGRES_USER=root, run as root
        "RELEASE_YEAR": year,
        "STATUS_WORD": "passed",
        "OTHER_WORD": "failed",
        "FEATURE": "enabled",
        "WHEN_WORD": "always",
        "APP_HOST": host,
        "DB_PASSWORD": password,
    }
    (work / "common.env").write_text("".join(f"{k}={v}\n" for k, v in values.items()))
    result = run_cli(["common-values.md", *ARTIFACTS], cwd=work)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "secret leak" not in result.stderr
    assert "PASSED: 2 passed in" in result.stdout

    report = json.loads((work / "r.json").read_text())
    assert report["status"] == "passed" and report["operator"] == user and report["host"] == host
    assert report["started_at"].startswith(year) and datetime.fromisoformat(report["finished_at"])
    assert [c["status"] for c in report["cells"]] == ["passed", "passed"]
    assert report["cells"][0]["when"] == "success" and report["cells"][1]["when"] == "always"
    # What came from the cell is masked, the runner's words around it are not.
    assert report["cells"][0]["tail"] == ["the password is ***", "status word: ***"]

    suite = ET.parse(work / "j.xml").getroot().find("testsuite")
    assert suite is not None and suite.get("timestamp", "").startswith(year)
    assert suite.get("failures") == "0" and suite.get("tests") == "2"

    transcript = (work / "t.log").read_text()
    lines = transcript.splitlines()
    assert all(datetime.fromisoformat(line[:STAMP_LEN]) for line in lines)
    assert "the password is ***" in transcript and "status word: ***" in transcript
    assert lines[-1].endswith("runner | PASSED: 2 passed in " + lines[-1].rsplit(" in ", 1)[1])

    [record] = release_log.records(work / "release.log")
    assert record.status == "passed" and record.meta["started_utc"].startswith(year)
    assert f"operator: {user} @ {host}" in record.body
    everything = result.stdout + result.stderr + transcript + (work / "r.json").read_text()
    assert password not in everything + (work / "j.xml").read_text() + (work / "release.log").read_text()
