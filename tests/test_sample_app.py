"""The sample backend (ops/sample-app/backend): auth, OpenAPI behind /api/, start-up rules, token minting.

The database is replaced by an in-memory store through FastAPI's dependency override; the e2e stack test
runs the same app against the real Postgres + pgvector container.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
import yaml
from fastapi.testclient import TestClient

from conftest import FIXTURES, ROOT

BACKEND = ROOT / "ops" / "sample-app" / "backend"
sys.path.insert(0, str(BACKEND))

from app import auth  # noqa: E402
from app.main import create_app, get_store  # noqa: E402
from app.settings import Settings, StartupRefused, check_startup  # noqa: E402
from app.store import Collection, StoreUnavailable  # noqa: E402

STARTUP_CASES: list[dict[str, Any]] = yaml.safe_load((FIXTURES / "compose" / "sample-app-startup.yaml").read_text())


class MemoryStore:
    """Stands in for Postgres in unit tests (the e2e test uses the real database)."""

    def __init__(self, available: bool = True) -> None:
        self.available = available

    def pgvector_version(self) -> str:
        if not self.available:
            raise StoreUnavailable("cannot connect to the database: OperationalError")
        return "0.8.0"

    def collections(self) -> list[Collection]:
        return [Collection("runbooks", 3, 3.0)]


def _settings(secret: str, app_env: str = "prod") -> Settings:
    return Settings.from_env({"APP_ENV": app_env, "JWT_SECRET_KEY": secret})


@pytest.fixture
def secret() -> str:
    return secrets.token_urlsafe(32)


@pytest.fixture
def client(secret: str) -> Iterator[TestClient]:
    app = create_app(_settings(secret))
    app.dependency_overrides[get_store] = MemoryStore
    # root_path as uvicorn sets it in the container (ROOT_PATH, default /api): nginx strips the prefix.
    with TestClient(app, root_path="/api") as c:
        yield c


def test_health_and_openapi(client: TestClient) -> None:
    assert client.get("/health").json() == {"status": "ok"}
    spec = client.get("/openapi.json")
    assert spec.status_code == 200
    assert "/v1/collections" in spec.json()["paths"]
    # Served behind nginx's /api/ prefix: the docs must point there.
    assert spec.json()["servers"] == [{"url": "/api"}]


def test_collections_without_token_is_401(client: TestClient) -> None:
    response = client.get("/v1/collections")
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize("kind", ["wrong-key", "expired", "garbage", "none-alg", "basic-scheme", "no-subject"])
def test_collections_with_bad_token_is_401(client: TestClient, secret: str, kind: str) -> None:
    now = time.time()
    headers = {
        "wrong-key": {"Authorization": f"Bearer {auth.mint(secrets.token_urlsafe(32))}"},
        "expired": {"Authorization": f"Bearer {auth.mint(secret, ttl_seconds=60, now=now - 3600)}"},
        "garbage": {"Authorization": "Bearer not.a.token"},
        "none-alg": {"Authorization": "Bearer " + jwt.encode({"sub": "x", "exp": int(now) + 60}, None, "none")},
        "basic-scheme": {"Authorization": f"Basic {auth.mint(secret)}"},
        "no-subject": {"Authorization": "Bearer " + jwt.encode({"exp": int(now) + 60}, secret, "HS256")},
    }[kind]
    assert client.get("/v1/collections", headers=headers).status_code == 401


def test_collections_with_token_is_200(client: TestClient, secret: str) -> None:
    token = auth.mint(secret, subject="operator")
    response = client.get("/v1/collections", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200
    body = response.json()
    assert body["subject"] == "operator"
    assert body["pgvector"] == "0.8.0"
    assert body["collections"] == [{"name": "runbooks", "dimensions": 3, "distance_to_origin": 3.0}]


def test_database_down_is_503_without_details(secret: str) -> None:
    app = create_app(_settings(secret))
    app.dependency_overrides[get_store] = lambda: MemoryStore(available=False)
    with TestClient(app) as c:
        response = c.get("/v1/collections", headers={"Authorization": f"Bearer {auth.mint(secret)}"})
    assert response.status_code == 503
    assert secret not in response.text


def test_no_key_configured_rejects_every_token() -> None:
    app = create_app(_settings("", app_env="dev"))
    app.dependency_overrides[get_store] = MemoryStore
    with TestClient(app) as c:
        token = auth.mint(secrets.token_urlsafe(32))
        assert c.get("/v1/collections", headers={"Authorization": f"Bearer {token}"}).status_code == 401


def _case_env(case: dict[str, Any], key: str) -> dict[str, str]:
    return {k: (key if v == "generated" else str(v)) for k, v in case["env"].items()}


@pytest.mark.parametrize("case", STARTUP_CASES, ids=[c["name"] for c in STARTUP_CASES])
def test_startup_rules(case: dict[str, Any]) -> None:
    settings = Settings.from_env(_case_env(case, secrets.token_urlsafe(32)))
    if "refused" in case:
        with pytest.raises(StartupRefused, match=case["refused"]):
            check_startup(settings)
    else:
        check_startup(settings)


def _python(module: str, env: dict[str, str], *args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    base = {
        k: v for k, v in os.environ.items() if k not in {"APP_ENV", "JWT_SECRET_KEY", "SAMPLE_FAIL_ON_START", "PORT"}
    }
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=BACKEND,
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.mark.parametrize("name", ["prod-changeme", "prod-empty-key", "failure-drill"])
def test_entry_point_refuses_to_start(name: str) -> None:
    case = next(c for c in STARTUP_CASES if c["name"] == name)
    env = _case_env(case, secrets.token_urlsafe(32))
    proc = _python("app", env)
    assert proc.returncode == 78, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if "refusing to start" in ln]
    assert len(lines) == 1 and case["refused"] in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr
    if env.get("JWT_SECRET_KEY", "").strip():
        assert env["JWT_SECRET_KEY"] not in proc.stderr + proc.stdout


def test_mint_token_prints_a_verifiable_short_lived_token() -> None:
    key = secrets.token_urlsafe(32)
    proc = _python("app.mint_token", {"JWT_SECRET_KEY": key}, "--ttl", "120")
    assert proc.returncode == 0, proc.stderr
    token = proc.stdout.strip()
    assert "\n" not in token and key not in token
    claims = auth.verify(token, key)
    assert 0 < claims["exp"] - time.time() <= 120


def test_mint_token_without_key_exits_2() -> None:
    proc = _python("app.mint_token", {"JWT_SECRET_KEY": ""})
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert "JWT_SECRET_KEY is not set" in proc.stderr


def test_sample_app_files_exist() -> None:
    app_dir = ROOT / "ops" / "sample-app"
    for rel in (
        "backend/Dockerfile",
        "frontend/Dockerfile",
        "db/Dockerfile",
        "frontend/nginx.conf",
        "frontend/index.html",
        "db/initdb/10-sample-schema.sql",
        "common/prepare-image.sh",
    ):
        assert (app_dir / rel).is_file(), rel
    assert isinstance(Path(app_dir / "ca").is_dir(), bool)
