"""The bare stack on a real Docker Engine: build, up --wait, smoke through nginx, authenticated call, down -v.

Skipped with a one-line reason when no engine is reachable, failed instead when RUNBOOK_E2E=required.
Base images: BACKEND_BASE_IMAGE / FRONTEND_BASE_IMAGE / DB_BASE_IMAGE from the environment, else the local
images ops/ci/engine.sh builds when they exist, else the public defaults of docker-compose.prod.yml.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from compose_env import COMPOSE_FILE, ROOT, clean_environ, compose_command, generated_env, write_env_file

pytestmark = pytest.mark.e2e

LOCAL_BASE_IMAGES = {
    "BACKEND_BASE_IMAGE": "runbook-local/python:3",
    "FRONTEND_BASE_IMAGE": "runbook-local/nginx:stable",
    "DB_BASE_IMAGE": "runbook-local/pgvector:pg17",
}


def _engine_problem() -> str | None:
    docker = shutil.which("docker")
    if docker is None:
        return "no docker CLI on PATH"
    info = subprocess.run([docker, "info"], capture_output=True, text=True, timeout=30, check=False)
    if info.returncode != 0:
        return "no Docker Engine reachable (docker info failed)"
    if compose_command() != [docker, "compose"]:
        return "no docker compose plugin (ops/ci/engine.sh installs it)"
    return None


def _need_engine() -> None:
    problem = _engine_problem()
    if problem is None:
        return
    if os.environ.get("RUNBOOK_E2E") == "required":
        pytest.fail(f"RUNBOOK_E2E=required but {problem}")
    pytest.skip(problem)


def _base_images() -> dict[str, str]:
    chosen = {}
    for var, local in LOCAL_BASE_IMAGES.items():
        if os.environ.get(var):
            chosen[var] = os.environ[var]
        elif subprocess.run(["docker", "image", "inspect", local], capture_output=True, check=False).returncode == 0:
            chosen[var] = local
    return chosen


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass(frozen=True)
class Stack:
    compose: list[str]
    env: dict[str, str]
    values: dict[str, str]
    port: int

    def run(
        self, *args: str, timeout: float = 600, extra: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*self.compose, "--env-file", self.env["ENV_FILE"], "-f", str(COMPOSE_FILE), *args],
            cwd=ROOT,
            env=clean_environ({**self.env, **(extra or {})}),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def get(self, path: str, token: str | None = None) -> tuple[int, str]:
        request = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}")
        if token is not None:
            request.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, response.read().decode("utf-8")
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode("utf-8")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    _need_engine()
    compose = compose_command()
    assert compose is not None
    values = generated_env()
    env_file = write_env_file(tmp_path_factory.mktemp("stack") / "rehearsal.env", values)
    port = _free_port()
    env = {
        "TAG": secrets.token_hex(4)[:7],
        "ENV_FILE": str(env_file),
        "HTTP_BIND": "127.0.0.1",
        "HTTP_PORT": str(port),
        # A project of its own: never touches a stack another run (or the operator) has up.
        "COMPOSE_PROJECT_NAME": "runbook-e2e-" + secrets.token_hex(3),
        **_base_images(),
    }
    s = Stack(compose, env, values, port)
    try:
        up = s.run("up", "-d", "--build", "--wait", "--wait-timeout", "180")
        assert up.returncode == 0, up.stdout[-3000:] + up.stderr[-3000:] + s.run("logs", "--tail=50").stdout
        yield s
    finally:
        down = s.run("down", "-v", "--rmi", "all", "--remove-orphans", timeout=300)
        assert down.returncode == 0, down.stderr


def test_all_three_services_healthy(stack: Stack) -> None:
    ps = stack.run("ps", "--format", "json", timeout=60)
    assert ps.returncode == 0, ps.stderr
    rows = [json.loads(line) for line in ps.stdout.splitlines() if line.strip()]
    health = {row["Service"]: row["Health"] for row in rows}
    assert health == {"db": "healthy", "backend": "healthy", "nginx": "healthy"}
    images = {row["Service"]: row["Image"] for row in rows}
    tag = stack.env["TAG"]
    assert images == {"db": f"db:{tag}", "backend": f"backend:{tag}", "nginx": f"frontend:{tag}"}


def test_smoke_through_nginx(stack: Stack) -> None:
    status, body = stack.get("/")
    assert status == 200 and "<html" in body
    status, body = stack.get("/api/openapi.json")
    assert status == 200
    spec = json.loads(body)
    assert "/v1/collections" in spec["paths"]
    assert spec["servers"] == [{"url": "/api"}]


def test_authenticated_call_reads_pgvector(stack: Stack) -> None:
    status, _ = stack.get("/api/v1/collections")
    assert status == 401
    minted = stack.run("exec", "-T", "backend", "python", "-m", "app.mint_token", timeout=60)
    assert minted.returncode == 0, minted.stderr
    token = minted.stdout.strip()
    status, body = stack.get("/api/v1/collections", token)
    assert status == 200, body
    data = json.loads(body)
    assert data["pgvector"]
    assert {c["name"] for c in data["collections"]} == {"manuals", "runbooks"}


def test_logs_carry_no_secret(stack: Stack) -> None:
    logs = stack.run("logs", "--no-color", timeout=60)
    assert logs.returncode == 0
    for value in stack.values.values():
        assert value not in logs.stdout + logs.stderr


def test_failure_switch_keeps_backend_unhealthy(stack: Stack) -> None:
    # Recreate only the backend with the drill switch on; nginx keeps the old one until we put it back.
    broken = stack.run(
        "up",
        "-d",
        "--no-deps",
        "--wait",
        "--wait-timeout",
        "60",
        "backend",
        extra={"SAMPLE_FAIL_ON_START": "1"},
        timeout=180,
    )
    assert broken.returncode != 0
    logs = stack.run("logs", "--no-color", "--tail=20", "backend", timeout=60)
    assert "refusing to start: SAMPLE_FAIL_ON_START is set" in logs.stdout
    fixed = stack.run("up", "-d", "--no-deps", "--wait", "--wait-timeout", "120", "backend", timeout=300)
    assert fixed.returncode == 0, fixed.stderr


def test_port_is_published_on_loopback_only(stack: Stack) -> None:
    port = stack.run("port", "nginx", "80", timeout=60)
    assert port.stdout.strip() == f"127.0.0.1:{stack.port}"


def test_engine_script_is_idempotent() -> None:
    """A second run of ops/ci/engine.sh reuses everything and only prints the base-image exports."""
    _need_engine()
    if os.geteuid() != 0:
        pytest.skip("ops/ci/engine.sh runs as root")

    def engine(timeout: float) -> subprocess.CompletedProcess[str]:
        script = str(ROOT / "ops" / "ci" / "engine.sh")
        return subprocess.run(["bash", script], capture_output=True, text=True, timeout=timeout, check=False)

    proc = engine(900)
    assert proc.returncode == 0, proc.stderr
    exports = dict(line.removeprefix("export ").split("=", 1) for line in proc.stdout.splitlines())
    assert exports == LOCAL_BASE_IMAGES
    again = engine(120)
    assert again.returncode == 0, again.stderr
    assert "dockerd answers" in again.stderr
    assert "--variant=minbase" not in again.stderr and "image: building" not in again.stderr
