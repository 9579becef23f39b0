"""Bearer JWT (HS256, signed with JWT_SECRET_KEY): minting and checking."""

from __future__ import annotations

import time
from typing import Any

import jwt

ALGORITHM = "HS256"


def mint(secret: str, subject: str = "runbook", ttl_seconds: int = 300, now: float | None = None) -> str:
    """Return a token for ``subject`` that expires after ``ttl_seconds``."""
    issued = int(time.time() if now is None else now)
    return jwt.encode({"sub": subject, "iat": issued, "exp": issued + ttl_seconds}, secret, algorithm=ALGORITHM)


def verify(token: str, secret: str) -> dict[str, Any]:
    """Return the claims of a valid token; raise ``jwt.InvalidTokenError`` otherwise."""
    if not secret:
        # With no key configured nothing can be verified: refuse rather than accept an unsigned token.
        raise jwt.InvalidTokenError("no signing key configured")
    claims: dict[str, Any] = jwt.decode(
        token, secret, algorithms=[ALGORITHM], options={"require": ["exp", "sub"]}
    )
    return claims
