"""Env files are read with Docker Compose's rules: a case file, also checked against the real Compose binary."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from runbook_exec.errors import RunbookError
from runbook_exec.ops.envfile import Entry, duplicates, env_file_entries, parse_env_file, parse_env_text

from compose_env import compose_command
from conftest import FIXTURES

CASES: list[dict[str, Any]] = yaml.safe_load((FIXTURES / "envfile" / "cases.yaml").read_text())


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_env_case(case: dict[str, Any]) -> None:
    if "error" in case:
        with pytest.raises(RunbookError) as info:
            parse_env_text(case["text"], "case.env", environ={})
        assert case["error"] in str(info.value)
        assert str(info.value).startswith("case.env:")
        return
    assert parse_env_text(case["text"], "case.env", environ={}) == case["want"]


@pytest.mark.parametrize("case", [c for c in CASES if "want" in c], ids=[c["name"] for c in CASES if "want" in c])
def test_compose_reads_the_same(case: dict[str, Any], tmp_path: Path) -> None:
    command = compose_command()
    if command is None:
        pytest.skip("no Compose v2 binary")
    (tmp_path / "case.env").write_bytes(case["text"].encode())
    (tmp_path / "compose.yml").write_text("services:\n  s:\n    image: scratch\n    env_file: case.env\n")
    result = subprocess.run(
        [*command, "-f", "compose.yml", "config", "--format", "json"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stderr
    environment = json.loads(result.stdout)["services"]["s"].get("environment") or {}
    # `config` prints a literal $ as $$ (its own escaping); undo that to compare values.
    got = {k: ("" if v is None else v.replace("$$", "$")) for k, v in environment.items()}
    assert got == parse_env_file(tmp_path / "case.env", environ={})


@pytest.mark.parametrize(
    "line", ['OPENAI_API_KEY "sk-proj-abcdef123456"', "=sk-proj-abcdef123456", "A='sk-proj-abcdef123456"]
)
def test_values_never_appear_in_errors(line: str) -> None:
    with pytest.raises(RunbookError) as info:
        parse_env_text(f"GOOD=value-one-123\n{line}\n", "x.env", environ={})
    assert "abcdef123456" not in str(info.value)
    assert str(info.value).startswith("x.env:2: ")


def test_every_value_of_a_duplicated_key_is_kept(tmp_path: Path) -> None:
    """Compose uses the last value; the entries keep every one (an old password left in while rotating)."""
    path = tmp_path / "rotating.env"
    path.write_text('DB_PASSWORD=old-pass-1111\nUSER=app\n\nexport DB_PASSWORD="new\npass-2222"\nUSER=app\n')
    entries = env_file_entries(path, environ={})
    assert entries == [
        Entry("DB_PASSWORD", "old-pass-1111", 1),
        Entry("USER", "app", 2),
        Entry("DB_PASSWORD", "new\npass-2222", 4),
        Entry("USER", "app", 6),
    ]
    assert duplicates(entries) == {"DB_PASSWORD": [1, 4], "USER": [2, 6]}
    assert parse_env_file(path, environ={}) == {"DB_PASSWORD": "new\npass-2222", "USER": "app"}
    assert list(parse_env_file(path, environ={})) == ["DB_PASSWORD", "USER"]  # first-seen order, as before
