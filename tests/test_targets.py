"""Targets: the front matter block, resolving ``--target`` names, and the up-front engine check (real docker CLI).

Resolution of Docker contexts and the engine check run the real docker CLI against a private DOCKER_CONFIG
(contexts created here, nothing touches ~/.docker); unreachable engines are a missing socket and a closed
ssh port, so no engine is needed. The rollout itself is in test_rollout.py, real engines in test_e2e_targets.py.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from runbook_exec.doc.document import parse_text
from runbook_exec.doc.targets import Target
from runbook_exec.errors import RunbookError
from runbook_exec.run import targets

from conftest import FIXTURES, run_cli

CASES: list[dict[str, Any]] = yaml.safe_load((FIXTURES / "targets" / "front-matter.yaml").read_text(encoding="utf-8"))
DOCKER = shutil.which("docker")
needs_docker_cli = pytest.mark.skipif(DOCKER is None, reason="no docker CLI on PATH")


def _book(block: str, path: str = "book.md") -> Any:
    body = "".join(f"    {line}\n" for line in block.rstrip("\n").split("\n"))
    text = f"---\nrunbook:\n  targets:\n{body}---\n# T\n\n```bash {{#run .exec}}\ntouch ran.marker\n```\n"
    return parse_text(text, path)


def _as_dict(t: Target) -> dict[str, Any]:
    out: dict[str, Any] = {k: v for k, v in (("context", t.context), ("docker_host", t.docker_host)) if v}
    if t.env_file:
        out["env_file"] = t.env_file
    if t.vars:
        out["vars"] = dict(t.vars)
    return out


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_front_matter_block(case: dict[str, Any]) -> None:
    book = _book(case["targets"])
    if "expect" in case:
        assert book.problems == ()
        assert {t.name: _as_dict(t) for t in book.settings.targets} == case["expect"]
        assert [t.name for t in book.settings.targets] == list(case["expect"])
        return
    found = [str(p) for p in book.problems]
    assert len(found) == len(case["problems"]), found
    for line, expected in zip(found, case["problems"], strict=True):
        number, message = expected.split(": ", 1)
        assert re.match(rf"^book\.md:{number}: front matter: {message}", line), (line, expected)


def test_front_matter_problems_are_check_findings(tmp_path: Path) -> None:
    """`runbook-exec check` reports a bad runbook.targets block like any other front matter problem."""
    (tmp_path / "book.md").write_text(
        "---\nrunbook:\n  targets:\n    prod: {docker_host: 'prod.example:22'}\n---\n# T\n", encoding="utf-8"
    )
    done = run_cli(["check", "book.md"], cwd=tmp_path)
    assert done.returncode != 0
    assert "book.md:4:" in done.stdout + done.stderr and "must start with one of" in done.stdout + done.stderr


def test_environment_points_the_cli_at_one_engine() -> None:
    ctx = Target("a", context="staging")
    host = Target("b", docker_host="ssh://deploy@10.0.0.11")
    inherited = {"DOCKER_HOST": "unix:///elsewhere.sock", "DOCKER_CONTEXT": "other", "PATH": "/bin"}
    # DOCKER_HOST outranks DOCKER_CONTEXT in the docker CLI: a context target must drop an inherited one.
    assert targets.apply(inherited, ctx.environ()) == {
        "DOCKER_CONTEXT": "staging",
        "RUNBOOK_TARGET": "a",
        "PATH": "/bin",
    }
    assert targets.apply(inherited, host.environ()) == {
        "DOCKER_HOST": "ssh://deploy@10.0.0.11",
        "RUNBOOK_TARGET": "b",
        "PATH": "/bin",
    }
    assert ctx.engine == "context staging" and host.engine == "ssh://deploy@10.0.0.11"


# -- resolution (real docker CLI, private config) ---------------------------------------------------------


@pytest.fixture
def docker_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private DOCKER_CONFIG holding one context, ``rbx-staging`` (the engine behind it does not exist)."""
    if DOCKER is None:
        pytest.skip("no docker CLI on PATH")
    config = tmp_path / "docker-config"
    config.mkdir()
    monkeypatch.setenv("DOCKER_CONFIG", str(config))
    made = subprocess.run(
        [DOCKER, "context", "create", "rbx-staging", "--docker", f"host=unix://{tmp_path}/absent.sock"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert made.returncode == 0, made.stderr
    return config


def test_resolution_front_matter_first_then_docker_contexts(docker_config: Path) -> None:
    book = _book("staging: {docker_host: 'ssh://deploy@10.0.0.11'}\nprod: {context: prod-ctx}")
    # Order is the order given; "staging" is the front matter's even though no context by that name exists,
    # "rbx-staging" is a Docker context the front matter does not declare.
    found = targets.resolve(book, ["rbx-staging", "prod", "staging"])
    assert [(t.name, t.context, t.docker_host, t.declared) for t in found] == [
        ("rbx-staging", "rbx-staging", None, False),
        ("prod", "prod-ctx", None, True),
        ("staging", None, "ssh://deploy@10.0.0.11", True),
    ]


def test_resolution_reports_every_unknown_name_at_once(docker_config: Path) -> None:
    book = _book("staging: {context: rbx-staging}")
    with pytest.raises(RunbookError) as caught:
        targets.resolve(book, ["stagin", "rbx-staging", "nowhere", "rbx-staging"])
    assert str(caught.value).split("\n") == [
        "runbook-exec: --target stagin: unknown target: not in runbook.targets of book.md and no Docker context "
        "of that name (did you mean 'staging', line 4?)",
        "runbook-exec: --target nowhere: unknown target: not in runbook.targets of book.md and no Docker context "
        "of that name",
        "runbook-exec: --target rbx-staging: given twice",
    ]


def test_resolution_refuses_a_runbook_with_problems() -> None:
    book = _book("a: {context: a, docker_host: 'ssh://x'}")
    with pytest.raises(RunbookError, match=r"^book\.md:4: front matter: runbook\.targets\.a: needs exactly one"):
        targets.resolve(book, ["a"])


# -- the up-front engine check (real docker CLI, real ssh client) ----------------------------------------


def _closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


@needs_docker_cli
def test_engine_check_names_every_unreachable_target(tmp_path: Path) -> None:
    port = _closed_port()
    book = _book(
        f"gone: {{docker_host: 'unix://{tmp_path}/absent.sock'}}\n"
        f"closed: {{docker_host: 'ssh://root@127.0.0.1:{port}'}}"
    )
    with pytest.raises(RunbookError) as caught:
        targets.check_engines(book, book.settings.targets, timeout=60)
    lines = str(caught.value).split("\n")
    assert len(lines) == 2, lines
    assert lines[0].startswith(f"book.md:4: target gone (unix://{tmp_path}/absent.sock): engine unreachable: ")
    assert lines[1].startswith(f"book.md:5: target closed (ssh://root@127.0.0.1:{port}): engine unreachable: ")
    assert re.search(r"(?i)cannot connect|no such file", lines[0]), lines[0]
    assert re.search(r"(?i)refused|ssh", lines[1]), lines[1]


def test_engine_check_without_a_docker_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    book = _book("a: {context: a}")
    with pytest.raises(RunbookError, match="needs the docker CLI on PATH"):
        targets.check_engines(book, book.settings.targets)


@needs_docker_cli
def test_unreachable_engine_is_exit_2_before_anything_runs(tmp_path: Path) -> None:
    (tmp_path / "book.md").write_text(
        "---\nrunbook:\n  release_log: release.log\n  targets:\n"
        f"    here: {{docker_host: 'unix://{tmp_path}/absent.sock'}}\n---\n# T\n\n"
        "```bash {#run .exec}\ntouch ran.marker\n```\n",
        encoding="utf-8",
    )
    done = run_cli(["book.md", "--target", "here"], cwd=tmp_path, timeout=90)
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.startswith(f"book.md:5: target here (unix://{tmp_path}/absent.sock): engine unreachable: ")
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "ran.marker").exists()
    assert not (tmp_path / "release.log").exists()
    assert not (tmp_path / ".runbook" / "runs").exists()
