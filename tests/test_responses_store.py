"""The Responses store's group commit on SQLite (gateway/api/responses/store.py): concurrent
writes share transactions, each caller returns once its write is committed, and a write that
fails (here: a duplicate response id) fails alone while the others of its batch are kept."""

import asyncio

from sqlalchemy.exc import IntegrityError

from gateway.api.responses.store import ResponseStore
from gateway.store import Database, database_url


def response(response_id: str) -> dict:
    return {"id": response_id, "status": "completed", "model": "m", "created_at": 1, "output": []}


def test_group_commit_keeps_good_writes_and_fails_the_bad_one_alone(tmp_path):
    async def run():
        database = Database(database_url(f"sqlite:///{tmp_path / 'store.db'}", None))
        await database.start()
        store = ResponseStore(database)
        await store.put_response("owner", response("resp_taken"), [], new=True)
        writes = [store.put_response("owner", response(f"resp_{n}"), [{"n": n}], new=True) for n in range(20)]
        writes.insert(10, store.put_response("owner", response("resp_taken"), [], new=True))
        outcomes = await asyncio.gather(*writes, return_exceptions=True)
        assert isinstance(outcomes[10], IntegrityError)
        assert [o for i, o in enumerate(outcomes) if i != 10] == [None] * 20
        for n in range(20):
            assert (await store.get_response("owner", f"resp_{n}"))[1] == [{"n": n}]
        assert await store.get_response("someone else", "resp_0") is None
        await database.close()

    asyncio.run(run())


def test_in_memory_database_uses_the_async_engine():
    async def run():
        database = Database(database_url(None, None))
        await database.start()
        store = ResponseStore(database)
        await store.put_response("owner", response("resp_1"), [], new=True)
        assert (await store.get_response("owner", "resp_1"))[0]["id"] == "resp_1"
        await database.close()

    asyncio.run(run())
