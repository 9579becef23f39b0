"""Fixture runbooks run through the real CLI and a real bash session.

Each fixture under ``fixtures/engine/`` carries its expectations in a ``test:`` front-matter block
(front matter is page meta for MkDocs too, so fixtures stay valid runbooks).
"""

from __future__ import annotations

import json
import secrets
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import FIXTURES, run_cli

CASES = sorted((FIXTURES / "engine").glob("*.md"))


def _expectations(path: Path) -> dict[str, Any]:
    text = path.read_text(encoding="utf-8-sig").replace("\r\n", "\n")
    meta = yaml.safe_load(text.split("---\n")[1])
    return dict(meta["test"])


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_engine_fixture(path: Path, tmp_path: Path) -> None:
    spec = _expectations(path)
    work = tmp_path / "engine-cwd"
    work.mkdir()
    book = work / path.name
    shutil.copyfile(path, book)
    args = [book.name, *spec.get("args", []), "--report", "r.json", "--junit", "j.xml", "--transcript", "t.log"]
    token = "tok-" + secrets.token_urlsafe(24)
    if spec.get("env"):
        (work / "test.env").write_text(f"APP_TOKEN={token}\n")
        args += ["--env-file", "test.env"]
    result = run_cli(args, cwd=work, timeout=60)
    assert result.returncode == spec["exit"], result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    if "max_seconds" in spec:
        assert result.seconds < spec["max_seconds"]
    report = json.loads((work / "r.json").read_text())
    statuses = {c["id"]: c["status"] for c in report["cells"]}
    for cell_id, status in spec.get("cells", {}).items():
        assert statuses.get(cell_id) == status, (cell_id, statuses, result.stdout)
    for cell_id, fields in spec.get("report", {}).items():
        cell = next(c for c in report["cells"] if c["id"] == cell_id)
        for key, value in fields.items():
            assert cell[key] == value, (cell_id, key, cell)
    if "order" in spec:
        ran = [c["id"] for c in report["cells"] if c["status"] != "skipped"]
        assert ran == spec["order"]
    for cell_id in spec.get("not_run", []):
        assert cell_id not in statuses
    for text in spec.get("output", []):
        assert text in result.stdout, result.stdout
    for text in spec.get("absent", []):
        assert text not in result.stdout
    assert token not in result.stdout + result.stderr
    for artifact in ("r.json", "j.xml", "t.log"):
        assert token not in (work / artifact).read_text()
    assert report["status"] == ("passed" if spec["exit"] == 0 else "failed")
