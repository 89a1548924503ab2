"""The SQL store of §8: URL defaults, schema created once, migrations applied once."""

from __future__ import annotations

import asyncio

from sqlalchemy import Column, Integer, Table, select, text

from gateway.store import Database, database_url, metadata
from gateway.store import database as store_module


def test_default_url_is_gateway_db_beside_the_config(tmp_path):
    config = tmp_path / "model_config.yaml"
    assert database_url(None, config) == f"sqlite+aiosqlite:///{tmp_path / 'gateway.db'}"
    assert database_url(None, None) == "sqlite+aiosqlite:///:memory:"


def test_user_urls_get_async_drivers():
    assert database_url("sqlite:///data/g.db", None) == "sqlite+aiosqlite:///data/g.db"
    assert database_url("postgresql://u:p@h/db", None) == "postgresql+asyncpg://u:p@h/db"
    assert database_url("postgres://h/db", None) == "postgresql+asyncpg://h/db"
    assert database_url("postgresql+psycopg://h/db", None) == "postgresql+psycopg://h/db"


def test_schema_created_then_migrations_run_once(tmp_path, monkeypatch):
    url = database_url(None, tmp_path / "c.yaml")
    ran: list[int] = []

    async def first_start():
        db = Database(url)
        await db.start()
        async with db.engine.connect() as conn:
            version = (await conn.execute(select(store_module.schema_version.c.version))).scalar()
        await db.close()
        return version

    assert asyncio.run(first_start()) == len(store_module.MIGRATIONS)

    async def migrate(conn):
        ran.append(1)
        await conn.execute(text("CREATE TABLE added_later (x INTEGER)"))

    monkeypatch.setattr(store_module, "MIGRATIONS", [*store_module.MIGRATIONS, migrate])

    async def restart():
        for _ in range(2):
            db = Database(url)
            await db.start()
            await db.close()
        db = Database(url)
        await db.start()
        async with db.engine.connect() as conn:
            await conn.execute(text("SELECT x FROM added_later"))
        await db.close()

    asyncio.run(restart())
    assert ran == [1]


def test_in_memory_database_is_one_database():
    table = Table("store_probe", metadata, Column("x", Integer))
    try:
        async def run():
            db = Database(database_url(None, None))
            await db.start()
            async with db.engine.begin() as conn:
                await conn.execute(table.insert().values(x=7))
            async with db.engine.connect() as conn:
                value = (await conn.execute(select(table.c.x))).scalar()
            await db.close()
            return value

        assert asyncio.run(run()) == 7
    finally:
        metadata.remove(table)


def test_postgresql_schema_created_and_reused(postgres_server):
    """The same schema on PostgreSQL through asyncpg (§8), created once and found again."""
    postgres_server.reset()
    table = Table("store_probe_pg", metadata, Column("x", Integer))
    try:
        async def run():
            for value in (1, 2):
                db = Database(database_url(postgres_server.url, None))
                await db.start()
                async with db.engine.begin() as conn:
                    await conn.execute(table.insert().values(x=value))
                await db.close()
            db = Database(database_url(postgres_server.url, None))
            await db.start()
            async with db.engine.connect() as conn:
                values = sorted((await conn.execute(select(table.c.x))).scalars())
                version = (await conn.execute(select(store_module.schema_version.c.version))).scalars().all()
            await db.close()
            return values, version

        values, version = asyncio.run(run())
        assert values == [1, 2]
        assert version == [len(store_module.MIGRATIONS)]  # one row, written once
    finally:
        metadata.remove(table)


def test_redis_server_fixture_is_real(redis_server):
    import redis

    client = redis.Redis.from_url(redis_server.url)
    client.set("probe", "1")
    assert client.get("probe") == b"1"
    assert client.info("server")["redis_version"]
