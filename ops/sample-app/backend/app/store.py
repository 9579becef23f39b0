"""Database access: the collections table and the pgvector extension."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from app.settings import Settings


class StoreUnavailable(Exception):
    """The database cannot answer (down, wrong credentials, pgvector missing)."""


@dataclass(frozen=True)
class Collection:
    """One row of the collections table."""

    name: str
    dimensions: int
    distance_to_origin: float


class Store(Protocol):
    """What the API needs from the database."""

    def pgvector_version(self) -> str: ...

    def collections(self) -> list[Collection]: ...


class PostgresStore:
    """The real store: one short connection per call (a sample app needs no pool)."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings

    def _connect(self):  # type: ignore[no-untyped-def]
        import psycopg

        s = self._settings
        try:
            # Keyword arguments, not a URL: passwords need no escaping this way.
            return psycopg.connect(
                host=s.postgres_host, port=s.postgres_port, user=s.postgres_user,
                password=s.postgres_password, dbname=s.postgres_db, connect_timeout=5,
            )
        except psycopg.Error as exc:
            raise StoreUnavailable(f"cannot connect to the database: {type(exc).__name__}") from None

    def pgvector_version(self) -> str:
        with self._connect() as conn:
            row = conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'").fetchone()
        if row is None:
            raise StoreUnavailable("the pgvector extension is not installed in the database")
        return str(row[0])

    def collections(self) -> list[Collection]:
        import psycopg

        try:
            with self._connect() as conn:
                rows = conn.execute(
                    "SELECT name, vector_dims(embedding), embedding <-> array_fill(0, ARRAY[vector_dims(embedding)])::vector"
                    " FROM collections ORDER BY name"
                ).fetchall()
        except psycopg.Error as exc:
            raise StoreUnavailable(f"query failed: {type(exc).__name__}") from None
        return [Collection(str(r[0]), int(r[1]), round(float(r[2]), 6)) for r in rows]
