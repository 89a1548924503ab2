"""The SQL store of CONTRACT.md §8, through SQLAlchemy's async engine.

`settings.database` is a URL: `sqlite:///PATH` (the default: `gateway.db` next to the config
file, through `aiosqlite`) or `postgresql://...` (through `asyncpg`). The sync-style URLs users
write are turned into their async drivers' (`sqlite+aiosqlite`, `postgresql+asyncpg`).

Every table of the gateway is declared on the module's `metadata`; `Database.start()` creates
what is missing and runs the migrations in `MIGRATIONS` that the database has not seen yet
(their count is kept in the `schema_version` table), so one schema is created and migrated at
start on every backend.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Awaitable, Callable
from pathlib import Path

from sqlalchemy import Column, Integer, MetaData, Table, event, select
from sqlalchemy.pool import StaticPool
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

log = logging.getLogger("gateway.store")

metadata = MetaData()

schema_version = Table("schema_version", metadata, Column("version", Integer, nullable=False))

# Ordered schema changes for databases created by an older gateway: each is an async function
# of an open connection, appended (never edited) by the feature that changes its tables.
MIGRATIONS: list[Callable[[AsyncConnection], Awaitable[None]]] = []


def database_url(configured: str | None, config_path: str | os.PathLike | None) -> str:
    """The async SQLAlchemy URL for `settings.database` (None: `gateway.db` beside the config,
    or an in-memory SQLite database for a config that has no file).

    `sqlite:///x.db` → `sqlite+aiosqlite:///x.db`; `postgresql://` / `postgres://` →
    `postgresql+asyncpg://`; a URL that already names a driver is kept as it is.
    """
    if not configured:
        if not config_path:
            return "sqlite+aiosqlite:///:memory:"
        return f"sqlite+aiosqlite:///{Path(config_path).resolve().parent / 'gateway.db'}"
    scheme, sep, rest = configured.partition("://")
    if not sep or "+" in scheme:
        return configured
    if scheme == "sqlite":
        return f"sqlite+aiosqlite://{rest}"
    if scheme in ("postgresql", "postgres"):
        return f"postgresql+asyncpg://{rest}"
    return configured


def sqlite_connection(dbapi_connection, _record) -> None:
    """Per-connection SQLite settings: in WAL mode `synchronous=NORMAL` syncs at checkpoints
    rather than on every commit (https://sqlite.org/pragma.html#pragma_synchronous): a commit
    survives a crash of the process, and only a power loss can take the last ones back. A
    commit then costs no fsync, which the per-request writes of stored responses (§9) need."""
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


class Database:
    """One async engine for the process. `start()` creates and migrates the schema; `close()`
    disposes the pool. `engine` is the `AsyncEngine` feature modules run their statements on.

    Raises whatever the driver raises when the database cannot be reached at `start()`.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        kwargs: dict = {}
        if url.startswith("sqlite"):
            # One writer at a time is SQLite's rule; WAL lets readers run beside it.
            kwargs["connect_args"] = {"timeout": 30}
            if ":memory:" in url:
                kwargs["poolclass"] = StaticPool  # one shared connection, or each sees its own DB
        self.engine: AsyncEngine = create_async_engine(url, **kwargs)
        if url.startswith("sqlite") and ":memory:" not in url:
            event.listen(self.engine.sync_engine, "connect", sqlite_connection)
        self.started = False

    async def start(self) -> None:
        """Create missing tables and apply pending `MIGRATIONS`, in one transaction."""
        if self.started:
            return
        async with self.engine.begin() as conn:
            if self.url.startswith("sqlite") and ":memory:" not in self.url:
                await conn.exec_driver_sql("PRAGMA journal_mode=WAL")
            elif self.url.startswith("postgresql"):
                # Replicas starting together: one creates and migrates, the others wait for it.
                await conn.exec_driver_sql("SELECT pg_advisory_xact_lock(7316052201)")
            await conn.run_sync(metadata.create_all)
            seen = (await conn.execute(select(schema_version.c.version))).scalar()
            if seen is None:
                # A new database has every table in its current shape: nothing to migrate.
                await conn.execute(schema_version.insert().values(version=len(MIGRATIONS)))
            else:
                for migrate in MIGRATIONS[seen:]:
                    await migrate(conn)
                if seen < len(MIGRATIONS):
                    await conn.execute(schema_version.update().values(version=len(MIGRATIONS)))
        self.started = True
        log.info("database ready: %s", self.engine.url.render_as_string(hide_password=True))

    async def close(self) -> None:
        """Dispose of the connection pool."""
        await self.engine.dispose()
        self.started = False
