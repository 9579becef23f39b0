"""Bad input gets exit 2, one line saying what and where, no traceback, and no cell runs."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import FIXTURES, run_cli

BAD = FIXTURES / "bad"
CASES: list[dict[str, Any]] = yaml.safe_load((BAD / "cases.yaml").read_text())


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_bad_input(case: dict[str, Any], tmp_path: Path) -> None:
    work = tmp_path / "bad"
    shutil.copytree(BAD, work)
    env = {"TAG": ""} if "TAG" in str(case["args"]) else {}
    result = run_cli(case["args"], cwd=work, env=env, timeout=30)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert lines, "no message"
    assert any(re.search(case["match"], line) for line in lines), result.stderr
    assert len(lines) <= 3, result.stderr
    assert not (work / "ran.marker").exists(), "a cell ran"
    assert result.stdout == ""
    for value in ("supersecretvalue", "sk-proj-pasted-value"):
        assert value not in result.stderr


def test_catalog_is_large_enough() -> None:
    assert len(CASES) >= 30
