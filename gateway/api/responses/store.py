"""Stored Responses state in the §8 SQL database (CONTRACT.md §9, State).

Tables (declared on `gateway.store.metadata`, so `Database.start()` creates them):

- `responses`: one row per stored response: `id`, `owner` (the SHA-256 of the token that
  created it; never the token), `created_at` (unix seconds), `status`, `previous_response_id`,
  `conversation_id`, `model`, `response` (the Response object as JSON, output included) and
  `input` (this turn's resolved input items as JSON, for `input_items` and chain replay).
- `conversations`: `id`, `owner`, `created_at`, `metadata` (JSON).
- `conversation_items`: `seq` (insertion order), `conversation_id`, `id` (the item's id),
  `item` (JSON).
- `responses_keys`: the gateway's sealing key for `reasoning.encrypted_content` (`seal.py`).

Every read and write is scoped by `owner`: another token's objects do not exist for it.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import orjson
from sqlalchemy import (Column, Connection, Engine, Index, Integer, String, Table, Text, bindparam, create_engine, delete, event,
                        select, update)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.pool import SingletonThreadPool

from gateway.store import Database, metadata
from gateway.store.database import sqlite_connection

T = TypeVar("T")

responses = Table(
    "responses", metadata,
    Column("id", String(80), primary_key=True),
    Column("owner", String(64), nullable=False),
    Column("created_at", Integer, nullable=False),
    Column("status", String(20), nullable=False),
    Column("previous_response_id", String(80)),
    Column("conversation_id", String(80)),
    Column("model", String(200)),
    Column("response", Text, nullable=False),
    Column("input", Text, nullable=False),
)
conversations = Table(
    "conversations", metadata,
    Column("id", String(80), primary_key=True),
    Column("owner", String(64), nullable=False),
    Column("created_at", Integer, nullable=False),
    Column("metadata", Text, nullable=False),
)
conversation_items = Table(
    "conversation_items", metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("conversation_id", String(80), nullable=False),
    Column("id", String(80), nullable=False),
    Column("item", Text, nullable=False),
    Index("conversation_items_by_conversation", "conversation_id", "seq"),
)
responses_keys = Table(
    "responses_keys", metadata,
    Column("name", String(40), primary_key=True),
    Column("value", Text, nullable=False),
)

# The statements of the hot path, built once (SQLAlchemy then reuses their compiled form; a
# statement with `.values(...)` literals costs about twice the CPU per execution).
INSERT_RESPONSE = responses.insert()
UPDATE_RESPONSE = update(responses).where(
    responses.c.id == bindparam("rid"), responses.c.owner == bindparam("rowner"), responses.c.status != "cancelled")

# How far `chain()` walks back through previous_response_id links.
MAX_CHAIN = 1000


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


class ResponseStore:
    """Reads and writes of responses and conversations for one `Database`.

    Each operation is written once as a function of a (sync-style) SQLAlchemy `Connection`. On
    PostgreSQL (asyncpg) each runs in its own transaction through the database's async engine
    (`AsyncConnection.run_sync`). On a SQLite file they run through a sync engine on the same
    file in one dedicated thread: a transaction costs one thread hop instead of aiosqlite's one
    per statement, and writes are group-committed: the writes that arrive while a commit is
    under way go together in the next transaction (SQLite has one writer at a time; the commit
    is most of a write's cost). A batch that fails is retried one write per transaction, so a
    failing write fails alone. Every caller still returns only once its write is committed.
    """

    def __init__(self, database: Database) -> None:
        self.database = database
        self._sync: Engine | None = None
        url = database.url
        if url.startswith("sqlite+aiosqlite") and ":memory:" not in url:
            self._sync = create_engine(url.replace("sqlite+aiosqlite", "sqlite", 1), poolclass=SingletonThreadPool,
                                       connect_args={"timeout": 30})
            event.listen(self._sync, "connect", sqlite_connection)
            self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="responses-store")
        self._pending: list[tuple[Callable[[Connection], Any], asyncio.Future]] = []
        self._flusher: asyncio.Future | None = None

    async def _run(self, operation: Callable[[Connection], T]) -> T:
        """`operation(connection)` in one transaction (reads, and writes on PostgreSQL)."""
        if self._sync is not None:
            return await asyncio.get_running_loop().run_in_executor(self._thread, self._in_thread, operation)
        async with self.database.engine.begin() as conn:
            return await conn.run_sync(operation)

    def _in_thread(self, operation: Callable[[Connection], T]) -> T:
        with self._sync.begin() as conn:
            return operation(conn)

    async def _write(self, operation: Callable[[Connection], T]) -> T:
        """`operation(connection)` committed: group-committed on SQLite, else as `_run`."""
        if self._sync is None:
            return await self._run(operation)
        future = asyncio.get_running_loop().create_future()
        self._pending.append((operation, future))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.ensure_future(self._flush())
        return await future

    async def _flush(self) -> None:
        loop = asyncio.get_running_loop()
        while self._pending:
            batch, self._pending = self._pending, []
            try:
                outcomes = await loop.run_in_executor(self._thread, self._commit_batch, [op for op, _ in batch])
            except BaseException as exc:  # the executor itself failed (shutdown): nothing was written
                outcomes = [(None, exc)] * len(batch)
            for (_, future), (value, error) in zip(batch, outcomes):
                if not future.done():
                    future.set_exception(error) if error is not None else future.set_result(value)

    def _commit_batch(self, operations: list[Callable[[Connection], Any]]) -> list[tuple[Any, BaseException | None]]:
        """Run `operations` in one transaction; if it fails, each in its own (in the store thread)."""
        try:
            with self._sync.begin() as conn:
                values = [operation(conn) for operation in operations]
            return [(value, None) for value in values]
        except Exception as exc:
            if len(operations) == 1:
                return [(None, exc)]
        outcomes: list[tuple[Any, BaseException | None]] = []
        for operation in operations:
            try:
                outcomes.append((self._in_thread(operation), None))
            except Exception as exc:
                outcomes.append((None, exc))
        return outcomes

    # -- responses ------------------------------------------------------------------------

    async def put_response(self, owner: str, response: dict, input_items: list[dict], *, new: bool,
                           append_to: str | None = None, appended: list[dict] | None = None) -> None:
        """Insert (`new`) or update a response (never one already `cancelled`: a background turn
        that ends after its cancel does not undo it); with `append_to`, also append `appended`
        items to that conversation, in the same transaction."""
        values = {"status": response["status"], "model": (response.get("model") or "")[:200], "response": _dumps(response),
                  "input": _dumps(input_items)}

        def operation(conn: Connection) -> None:
            if new:
                conn.execute(INSERT_RESPONSE, {
                    "id": response["id"], "owner": owner, "created_at": response["created_at"],
                    "previous_response_id": response.get("previous_response_id"),
                    "conversation_id": (response.get("conversation") or {}).get("id"), **values})
            elif not conn.execute(UPDATE_RESPONSE, {"rid": response["id"], "rowner": owner, **values}).rowcount:
                return
            if append_to and appended:
                conn.execute(conversation_items.insert(), _item_rows(append_to, appended))

        await self._write(operation)

    async def get_response(self, owner: str, response_id: str) -> tuple[dict, list[dict]] | None:
        """`(response, input items)`, or None when `owner` has no such response."""
        row = await self._run(lambda conn: conn.execute(select(responses.c.response, responses.c.input).where(
            responses.c.id == response_id, responses.c.owner == owner)).first())
        return None if row is None else (orjson.loads(row[0]), orjson.loads(row[1]))

    async def delete_response(self, owner: str, response_id: str) -> bool:
        """Delete a response; False when `owner` has no such response."""
        return await self._write(lambda conn: conn.execute(delete(responses).where(
            responses.c.id == response_id, responses.c.owner == owner)).rowcount > 0)

    async def chain(self, owner: str, response_id: str) -> tuple[list[dict], dict] | None:
        """The history a `previous_response_id` stands for: each turn's input then output items,
        oldest turn first, and the newest response itself. None when it is not `owner`'s."""

        def operation(conn: Connection):
            rows, current = [], response_id
            while current and len(rows) < MAX_CHAIN:
                row = conn.execute(select(responses.c.response, responses.c.input).where(
                    responses.c.id == current, responses.c.owner == owner)).first()
                if row is None:
                    break  # not there (or an earlier turn was deleted: the chain starts after it)
                response = orjson.loads(row[0])
                rows.append((response, orjson.loads(row[1])))
                current = response.get("previous_response_id")
            return rows

        rows = await self._run(operation)
        if not rows:
            return None
        return [item for response, inputs in reversed(rows) for item in inputs + response["output"]], rows[0][0]

    # -- conversations --------------------------------------------------------------------

    async def create_conversation(self, owner: str, conversation_id: str, meta: dict, items: list[dict]) -> dict:
        """Create a conversation with its first `items`; returns the Conversation object."""
        created = int(time.time())

        def operation(conn: Connection) -> None:
            conn.execute(conversations.insert().values(id=conversation_id, owner=owner, created_at=created, metadata=_dumps(meta)))
            if items:
                conn.execute(conversation_items.insert(), _item_rows(conversation_id, items))

        await self._write(operation)
        return conversation_object(conversation_id, created, meta)

    async def get_conversation(self, owner: str, conversation_id: str) -> dict | None:
        """The Conversation object, or None when `owner` has no such conversation."""
        row = await self._run(lambda conn: conn.execute(select(conversations.c.created_at, conversations.c.metadata).where(
            conversations.c.id == conversation_id, conversations.c.owner == owner)).first())
        return None if row is None else conversation_object(conversation_id, row[0], orjson.loads(row[1]))

    async def update_conversation(self, owner: str, conversation_id: str, meta: dict) -> dict | None:
        """Replace a conversation's metadata; the updated object, or None when not `owner`'s."""
        updated = await self._write(lambda conn: conn.execute(update(conversations).where(
            conversations.c.id == conversation_id, conversations.c.owner == owner).values(metadata=_dumps(meta))).rowcount)
        return await self.get_conversation(owner, conversation_id) if updated else None

    async def delete_conversation(self, owner: str, conversation_id: str) -> bool:
        """Delete a conversation and its items; False when not `owner`'s."""

        def operation(conn: Connection) -> bool:
            if not conn.execute(delete(conversations).where(
                    conversations.c.id == conversation_id, conversations.c.owner == owner)).rowcount:
                return False
            conn.execute(delete(conversation_items).where(conversation_items.c.conversation_id == conversation_id))
            return True

        return await self._write(operation)

    async def add_items(self, conversation_id: str, items: list[dict]) -> None:
        """Append items to a conversation (the caller checked its owner)."""
        if items:
            await self._write(lambda conn: conn.execute(conversation_items.insert(), _item_rows(conversation_id, items)))

    async def items(self, conversation_id: str) -> list[dict]:
        """All of a conversation's items, oldest first."""
        rows = await self._run(lambda conn: conn.execute(select(conversation_items.c.item).where(
            conversation_items.c.conversation_id == conversation_id).order_by(conversation_items.c.seq)).all())
        return [orjson.loads(row[0]) for row in rows]

    async def items_page(self, conversation_id: str, after: str | None, limit: int, order: str) -> tuple[list[dict], bool] | None:
        """Up to `limit` items in `order` after the item `after`, and whether there are more.
        None when `after` is not an item of the conversation."""
        c = conversation_items.c

        def operation(conn: Connection):
            query = select(c.item).where(c.conversation_id == conversation_id)
            if after is not None:
                seq = conn.execute(select(c.seq).where(c.conversation_id == conversation_id, c.id == after)).scalar()
                if seq is None:
                    return None
                query = query.where(c.seq > seq if order == "asc" else c.seq < seq)
            return conn.execute(query.order_by(c.seq if order == "asc" else c.seq.desc()).limit(limit + 1)).all()

        rows = await self._run(operation)
        if rows is None:
            return None
        return [orjson.loads(row[0]) for row in rows[:limit]], len(rows) > limit

    async def get_item(self, conversation_id: str, item_id: str) -> dict | None:
        """One item of a conversation, or None."""
        value = await self._run(lambda conn: conn.execute(select(conversation_items.c.item).where(
            conversation_items.c.conversation_id == conversation_id, conversation_items.c.id == item_id)).scalar())
        return None if value is None else orjson.loads(value)

    async def find_item(self, owner: str, item_id: str) -> dict | None:
        """An item of any of `owner`'s conversations (for `item_reference`), or None."""
        c = conversation_items.c
        value = await self._run(lambda conn: conn.execute(select(c.item).join(conversations, conversations.c.id == c.conversation_id).where(
            conversations.c.owner == owner, c.id == item_id).limit(1)).scalar())
        return None if value is None else orjson.loads(value)

    async def delete_item(self, conversation_id: str, item_id: str) -> bool:
        """Delete one item of a conversation; False when there is none."""
        return await self._write(lambda conn: conn.execute(delete(conversation_items).where(
            conversation_items.c.conversation_id == conversation_id, conversation_items.c.id == item_id)).rowcount > 0)

    # -- the sealing key ------------------------------------------------------------------

    async def sealing_key(self) -> bytes:
        """The gateway's 256-bit key for sealed reasoning content, made on first use (the first
        writer wins when several processes start together)."""
        select_key = select(responses_keys.c.value).where(responses_keys.c.name == "seal")

        def operation(conn: Connection) -> str:
            value = conn.execute(select_key).scalar()
            if value is None:
                conn.execute(responses_keys.insert().values(name="seal", value=secrets.token_hex(32)))
                value = conn.execute(select_key).scalar()
            return value

        try:
            value = await self._run(operation)
        except IntegrityError:
            value = await self._run(lambda conn: conn.execute(select_key).scalar())
        return bytes.fromhex(value)


def _item_rows(conversation_id: str, items: list[dict]) -> list[dict]:
    return [{"conversation_id": conversation_id, "id": item["id"], "item": _dumps(item)} for item in items]


def conversation_object(conversation_id: str, created_at: int, meta: dict) -> dict:
    """OpenAI's Conversation object."""
    return {"id": conversation_id, "object": "conversation", "created_at": created_at, "metadata": meta}
