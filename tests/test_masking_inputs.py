"""Where secrets come from: every value of an env file (a key defined twice included), Runme's project
``.env`` files, and inherited environment variables whose names mark them secret."""

from __future__ import annotations

import json
import os
import secrets
import sys
from pathlib import Path

import pexpect
import pytest

from runbook_exec.doc.document import parse, parse_text
from runbook_exec.errors import RunbookError
from runbook_exec.run.plan import Options, Selection, build

from conftest import ROOT

BOOK = '# Book\n\n```bash {#show .exec}\necho "token=$API_TOKEN pass=$DB_PASSWORD"\n```\n'


def _values(plan_secrets: tuple[object, ...]) -> set[str]:
    return {s.value for s in plan_secrets}  # type: ignore[attr-defined]


def test_every_value_of_a_duplicated_key_is_masked_and_the_warning_names_key_and_lines(tmp_path: Path) -> None:
    old, new = secrets.token_urlsafe(15), secrets.token_urlsafe(15)
    env = tmp_path / "prod.env"
    env.write_text(f"DB_PASSWORD={old}\nAPP=web\nDB_PASSWORD={new}\n")
    plan = build(parse_text(BOOK, "b.md"), Selection(), Options(env_file=str(env), environ={}))
    assert plan.env["DB_PASSWORD"] == new  # the session gets the last value, as Compose
    assert {old, new} <= _values(plan.secrets)
    warning = next(w for w in plan.warnings if "DB_PASSWORD" in w)
    assert "lines 1, 3" in warning
    assert old not in " ".join(plan.warnings) and new not in " ".join(plan.warnings)


def test_a_short_old_value_of_a_secret_name_refuses_the_run_like_any_short_secret(tmp_path: Path) -> None:
    env = tmp_path / "prod.env"
    env.write_text(f"DB_PASSWORD=ab\nDB_PASSWORD={secrets.token_urlsafe(15)}\n")
    with pytest.raises(RunbookError, match="DB_PASSWORD: value is shorter than 4 characters"):
        build(parse_text(BOOK, "b.md"), Selection(), Options(env_file=str(env), environ={}))


def test_runme_project_env_files_mask_every_value(tmp_path: Path) -> None:
    first, second, local = (secrets.token_urlsafe(15) for _ in range(3))
    (tmp_path / ".env").write_text(f"API_TOKEN={first}\nAPI_TOKEN={second}\n")
    (tmp_path / ".env.local").write_text(f"API_TOKEN={local}\n")
    book = tmp_path / "README.md"
    book.write_text("---\nrunme:\n  id: x\n---\n\n# R\n\n```sh {name=show}\necho $API_TOKEN\n```\n")
    plan = build(parse(str(book)), Selection(), Options(environ={}))
    assert plan.env["API_TOKEN"] == local
    assert {first, second, local} <= _values(plan.secrets)


def test_inherited_secret_names_are_masked_and_short_ones_never_refuse() -> None:
    token = secrets.token_urlsafe(18)
    environ = {"API_TOKEN": token, "GH_KEY": "abcde", "SHORT_PASSWORD": "ab", "FLAG_SECRET": "true", "HOME": "/root"}
    plan = build(parse_text(BOOK, "b.md"), Selection(), Options(environ=environ))
    assert _values(plan.secrets) == {token, "abcde"}
    assert not any("SHORT_PASSWORD" in w or "FLAG_SECRET" in w for w in plan.warnings)


def test_an_inherited_token_never_reaches_the_terminal_or_any_artifact(tmp_path: Path) -> None:
    """``API_TOKEN=… runbook-exec book.md`` on a terminal: masked on screen and in every artifact."""
    token, password = secrets.token_urlsafe(18), secrets.token_urlsafe(12)
    (tmp_path / "book.md").write_text(BOOK)
    env = dict(os.environ, NO_COLOR="1", PYTHONPATH=str(ROOT), API_TOKEN=token, DB_PASSWORD=password)
    child = pexpect.spawn(
        sys.executable,
        ["-m", "runbook_exec.cli", "book.md", "--report", "r.json", "--junit", "j.xml", "--transcript", "t.log",
         "--release-log", "release.log"],
        cwd=str(tmp_path), env=env, timeout=60, dimensions=(40, 200),
    )  # fmt: skip
    child.expect(pexpect.EOF)
    screen = child.before
    child.close()
    assert child.exitstatus == 0, screen.decode(errors="replace")
    assert b"token=*** pass=***" in screen
    for data in [screen, *((tmp_path / n).read_bytes() for n in ("r.json", "j.xml", "t.log", "release.log"))]:
        assert token.encode() not in data and password.encode() not in data
    json.loads((tmp_path / "r.json").read_text())


def test_a_runme_env_file_value_the_environment_overrides_is_neither_used_nor_refused(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("API_KEY=x\nNODE_ENV=development\n")
    book = tmp_path / "README.md"
    book.write_text("---\nrunme:\n  id: x\n---\n\n# R\n\n```sh {name=show}\necho $API_KEY\n```\n")
    plan = build(parse(str(book)), Selection(), Options(environ={"API_KEY": "from-the-environment", "NODE_ENV": "t"}))
    assert "development" not in _values(plan.secrets)  # Runme keeps the environment's value
    assert "from-the-environment" in _values(plan.secrets)  # an inherited secret name
