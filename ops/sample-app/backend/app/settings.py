"""Configuration from the environment, and the start-up rules the runbook relies on."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

# Values that appear in tutorials, templates and .env samples: a production service must never run with one.
WELL_KNOWN_SECRETS = frozenset(
    {
        "changeme", "change-me", "change_me", "changethis", "change-this", "changeit", "please-change-me",
        "secret", "secretkey", "secret-key", "secret_key", "supersecret", "super-secret", "topsecret",
        "jwt-secret", "jwt_secret", "jwtsecret", "jwt-secret-key", "jwt_secret_key",
        "your-secret-key", "your_secret_key", "yoursecretkey", "your-256-bit-secret", "mysecret",
        "default", "password", "passw0rd", "admin", "test", "testing", "dev", "development", "insecure",
        "example", "xxx", "todo", "none", "null",
    }
)


class StartupRefused(Exception):
    """The service must not start with this configuration; the message is one log line, without values."""


@dataclass(frozen=True)
class Settings:
    """Everything the service reads from its environment."""

    app_env: str
    jwt_secret_key: str
    postgres_host: str
    postgres_port: int
    postgres_user: str
    postgres_password: str
    postgres_db: str
    root_path: str
    fail_on_start: bool

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read the settings from ``env`` (default: the process environment)."""
        e = os.environ if env is None else env
        return cls(
            app_env=e.get("APP_ENV", "dev").strip().lower(),
            jwt_secret_key=e.get("JWT_SECRET_KEY", ""),
            postgres_host=e.get("POSTGRES_HOST", "db"),
            postgres_port=int(e.get("POSTGRES_PORT", "5432") or "5432"),
            postgres_user=e.get("POSTGRES_USER", ""),
            postgres_password=e.get("POSTGRES_PASSWORD", ""),
            postgres_db=e.get("POSTGRES_DB", ""),
            root_path=e.get("ROOT_PATH", "/api"),
            fail_on_start=e.get("SAMPLE_FAIL_ON_START", "").strip().lower() in {"1", "true", "yes", "on"},
        )


def check_startup(settings: Settings) -> None:
    """Raise :class:`StartupRefused` when the service must not start (never naming a secret's value)."""
    if settings.fail_on_start:
        raise StartupRefused("SAMPLE_FAIL_ON_START is set: exiting on purpose (failure drill)")
    if settings.app_env in {"prod", "production"}:
        key = settings.jwt_secret_key.strip()
        if not key:
            raise StartupRefused("APP_ENV=prod and JWT_SECRET_KEY is empty: set a strong random value")
        if key.lower() in WELL_KNOWN_SECRETS:
            raise StartupRefused("APP_ENV=prod and JWT_SECRET_KEY is a well-known default: set a strong random value")
