"""The HTTP API: /health, /openapi.json (FastAPI's own), /v1/collections (Bearer JWT)."""

from __future__ import annotations

from typing import Annotated, Any

import jwt
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from app import auth
from app.settings import Settings
from app.store import PostgresStore, Store, StoreUnavailable

_bearer = HTTPBearer(auto_error=False)


def get_settings(request: Request) -> Settings:
    """The settings the app was created with."""
    settings: Settings = request.app.state.settings
    return settings


def get_store(settings: Annotated[Settings, Depends(get_settings)]) -> Store:
    """The database; tests override this dependency."""
    return PostgresStore(settings)


def require_token(
    settings: Annotated[Settings, Depends(get_settings)],
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> dict[str, Any]:
    """The verified claims of the request's Bearer token, or 401."""
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise HTTPException(401, "missing bearer token", headers={"WWW-Authenticate": "Bearer"})
    try:
        return auth.verify(credentials.credentials, settings.jwt_secret_key)
    except jwt.InvalidTokenError:
        raise HTTPException(401, "invalid token", headers={"WWW-Authenticate": "Bearer"}) from None


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the app. The server passes ``settings.root_path`` (/api) so the docs point behind the proxy."""
    settings = Settings.from_env() if settings is None else settings
    app = FastAPI(title="runbook sample backend", version="1.0.0")
    app.state.settings = settings

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/v1/collections")
    def collections(
        claims: Annotated[dict[str, Any], Depends(require_token)],
        store: Annotated[Store, Depends(get_store)],
    ) -> dict[str, Any]:
        try:
            version = store.pgvector_version()
            rows = store.collections()
        except StoreUnavailable as exc:
            raise HTTPException(503, str(exc)) from None
        return {
            "subject": claims["sub"],
            "pgvector": version,
            "collections": [
                {"name": c.name, "dimensions": c.dimensions, "distance_to_origin": c.distance_to_origin}
                for c in rows
            ],
        }

    return app
