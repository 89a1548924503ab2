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

import secrets
import time
from typing import Any

import orjson
from sqlalchemy import Column, Index, Integer, String, Table, Text, delete, func, select, update

from gateway.store import Database, metadata

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

# How far `chain()` walks back through previous_response_id links.
MAX_CHAIN = 1000


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


class ResponseStore:
    """Async reads and writes of responses and conversations for one `Database`."""

    def __init__(self, database: Database) -> None:
        self.database = database

    @property
    def engine(self):
        return self.database.engine

    # -- responses ------------------------------------------------------------------------

    async def put_response(self, owner: str, response: dict, input_items: list[dict], *, new: bool,
                           append_to: str | None = None, appended: list[dict] | None = None) -> None:
        """Insert (`new`) or update a response (never one already `cancelled`: a background turn
        that ends after its cancel does not undo it); with `append_to`, also append `appended`
        items to that conversation, in the same transaction."""
        values = {"status": response["status"], "model": response.get("model"), "response": _dumps(response),
                  "input": _dumps(input_items)}
        async with self.engine.begin() as conn:
            if new:
                await conn.execute(responses.insert().values(
                    id=response["id"], owner=owner, created_at=response["created_at"],
                    previous_response_id=response.get("previous_response_id"),
                    conversation_id=(response.get("conversation") or {}).get("id"), **values))
            else:
                result = await conn.execute(update(responses).where(
                    responses.c.id == response["id"], responses.c.owner == owner, responses.c.status != "cancelled").values(**values))
                if not result.rowcount:
                    return
            if append_to and appended:
                await conn.execute(conversation_items.insert(), [
                    {"conversation_id": append_to, "id": item["id"], "item": _dumps(item)} for item in appended])

    async def get_response(self, owner: str, response_id: str) -> tuple[dict, list[dict]] | None:
        """`(response, input items)`, or None when `owner` has no such response."""
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(responses.c.response, responses.c.input).where(
                responses.c.id == response_id, responses.c.owner == owner))).first()
        return None if row is None else (orjson.loads(row[0]), orjson.loads(row[1]))

    async def delete_response(self, owner: str, response_id: str) -> bool:
        """Delete a response; False when `owner` has no such response."""
        async with self.engine.begin() as conn:
            result = await conn.execute(delete(responses).where(responses.c.id == response_id, responses.c.owner == owner))
        return result.rowcount > 0

    async def chain(self, owner: str, response_id: str) -> tuple[list[dict], dict] | None:
        """The history a `previous_response_id` stands for: each turn's input then output items,
        oldest turn first, and the newest response itself. None when it is not `owner`'s."""
        turns: list[list[dict]] = []
        newest = None
        current: str | None = response_id
        async with self.engine.connect() as conn:
            while current and len(turns) < MAX_CHAIN:
                row = (await conn.execute(select(responses.c.response, responses.c.input).where(
                    responses.c.id == current, responses.c.owner == owner))).first()
                if row is None:
                    if newest is None:
                        return None
                    break  # an earlier turn was deleted: the chain starts after it
                response = orjson.loads(row[0])
                newest = newest or response
                turns.append(orjson.loads(row[1]) + [i for i in response["output"] if i.get("type") != "reasoning" or i.get("encrypted_content")])
                current = response.get("previous_response_id")
        return [item for turn in reversed(turns) for item in turn], newest

    # -- conversations --------------------------------------------------------------------

    async def create_conversation(self, owner: str, conversation_id: str, meta: dict, items: list[dict]) -> dict:
        """Create a conversation with its first `items`; returns the Conversation object."""
        created = int(time.time())
        async with self.engine.begin() as conn:
            await conn.execute(conversations.insert().values(id=conversation_id, owner=owner, created_at=created, metadata=_dumps(meta)))
            if items:
                await conn.execute(conversation_items.insert(), [
                    {"conversation_id": conversation_id, "id": item["id"], "item": _dumps(item)} for item in items])
        return conversation_object(conversation_id, created, meta)

    async def get_conversation(self, owner: str, conversation_id: str) -> dict | None:
        """The Conversation object, or None when `owner` has no such conversation."""
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(conversations.c.created_at, conversations.c.metadata).where(
                conversations.c.id == conversation_id, conversations.c.owner == owner))).first()
        return None if row is None else conversation_object(conversation_id, row[0], orjson.loads(row[1]))

    async def update_conversation(self, owner: str, conversation_id: str, meta: dict) -> dict | None:
        """Replace a conversation's metadata; the updated object, or None when not `owner`'s."""
        async with self.engine.begin() as conn:
            result = await conn.execute(update(conversations).where(
                conversations.c.id == conversation_id, conversations.c.owner == owner).values(metadata=_dumps(meta)))
        return await self.get_conversation(owner, conversation_id) if result.rowcount else None

    async def delete_conversation(self, owner: str, conversation_id: str) -> bool:
        """Delete a conversation and its items; False when not `owner`'s."""
        async with self.engine.begin() as conn:
            result = await conn.execute(delete(conversations).where(
                conversations.c.id == conversation_id, conversations.c.owner == owner))
            if result.rowcount:
                await conn.execute(delete(conversation_items).where(conversation_items.c.conversation_id == conversation_id))
        return result.rowcount > 0

    async def add_items(self, conversation_id: str, items: list[dict]) -> None:
        """Append items to a conversation (the caller checked its owner)."""
        if items:
            async with self.engine.begin() as conn:
                await conn.execute(conversation_items.insert(), [
                    {"conversation_id": conversation_id, "id": item["id"], "item": _dumps(item)} for item in items])

    async def items(self, conversation_id: str) -> list[dict]:
        """All of a conversation's items, oldest first."""
        async with self.engine.connect() as conn:
            rows = (await conn.execute(select(conversation_items.c.item).where(
                conversation_items.c.conversation_id == conversation_id).order_by(conversation_items.c.seq))).all()
        return [orjson.loads(row[0]) for row in rows]

    async def items_page(self, conversation_id: str, after: str | None, limit: int, order: str) -> tuple[list[dict], bool] | None:
        """Up to `limit` items in `order` after the item `after`, and whether there are more.
        None when `after` is not an item of the conversation."""
        c = conversation_items.c
        query = select(c.item).where(c.conversation_id == conversation_id)
        async with self.engine.connect() as conn:
            if after is not None:
                seq = (await conn.execute(select(c.seq).where(c.conversation_id == conversation_id, c.id == after))).scalar()
                if seq is None:
                    return None
                query = query.where(c.seq > seq if order == "asc" else c.seq < seq)
            query = query.order_by(c.seq if order == "asc" else c.seq.desc()).limit(limit + 1)
            rows = (await conn.execute(query)).all()
        return [orjson.loads(row[0]) for row in rows[:limit]], len(rows) > limit

    async def get_item(self, conversation_id: str, item_id: str) -> dict | None:
        """One item of a conversation, or None."""
        async with self.engine.connect() as conn:
            value = (await conn.execute(select(conversation_items.c.item).where(
                conversation_items.c.conversation_id == conversation_id, conversation_items.c.id == item_id))).scalar()
        return None if value is None else orjson.loads(value)

    async def find_item(self, owner: str, item_id: str) -> dict | None:
        """An item of any of `owner`'s conversations (for `item_reference`), or None."""
        c = conversation_items.c
        async with self.engine.connect() as conn:
            value = (await conn.execute(select(c.item).join(conversations, conversations.c.id == c.conversation_id).where(
                conversations.c.owner == owner, c.id == item_id).limit(1))).scalar()
        return None if value is None else orjson.loads(value)

    async def delete_item(self, conversation_id: str, item_id: str) -> bool:
        """Delete one item of a conversation; False when there is none."""
        async with self.engine.begin() as conn:
            result = await conn.execute(delete(conversation_items).where(
                conversation_items.c.conversation_id == conversation_id, conversation_items.c.id == item_id))
        return result.rowcount > 0

    async def count_items(self, conversation_id: str) -> int:
        async with self.engine.connect() as conn:
            return (await conn.execute(select(func.count()).select_from(conversation_items).where(
                conversation_items.c.conversation_id == conversation_id))).scalar() or 0

    # -- the sealing key ------------------------------------------------------------------

    async def sealing_key(self) -> bytes:
        """The gateway's 256-bit key for sealed reasoning content, made on first use."""
        async with self.engine.begin() as conn:
            value = (await conn.execute(select(responses_keys.c.value).where(responses_keys.c.name == "seal"))).scalar()
            if value is None:
                value = secrets.token_hex(32)
                await conn.execute(responses_keys.insert().values(name="seal", value=value))
        return bytes.fromhex(value)


def conversation_object(conversation_id: str, created_at: int, meta: dict) -> dict:
    """OpenAI's Conversation object."""
    return {"id": conversation_id, "object": "conversation", "created_at": created_at, "metadata": meta}
