"""Helpers for the Responses API tests: reading an SSE event stream as the wire carries it."""

from __future__ import annotations

import json

import httpx


def read_events(base_url: str, token: str, body: dict) -> tuple[list[tuple[str, dict]], str]:
    """POST a streamed `/v1/responses` request; returns ([(event line, data)], raw body text).
    Asserts the stream is `text/event-stream` and every frame has an `event:` and a `data:` line."""
    with httpx.stream("POST", f"{base_url}/v1/responses", headers={"authorization": f"Bearer {token}"},
                      json={**body, "stream": True}, timeout=30) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        raw = response.read().decode()
    events = []
    for block in raw.strip().split("\n\n"):
        lines = block.split("\n")
        assert len(lines) == 2 and lines[0].startswith("event: ") and lines[1].startswith("data: "), block
        events.append((lines[0][len("event: "):], json.loads(lines[1][len("data: "):])))
    return events, raw


def check_sequence(events: list[tuple[str, dict]]) -> None:
    """The invariants every Responses stream keeps (openai-python's accumulator and Codex rely
    on them): `event:` equals `data.type`; sequence numbers 0, 1, 2...; created, in_progress
    first; each item added before its deltas and done before the next is added, with matching
    `output_index` / `item_id`; one terminal event, last."""
    types = [data["type"] for _, data in events]
    assert [name for name, _ in events] == types
    assert [data["sequence_number"] for _, data in events] == list(range(len(events)))
    assert types[:2] == ["response.created", "response.in_progress"]
    assert types[-1] in ("response.completed", "response.incomplete", "response.failed")
    assert sum(t in ("response.completed", "response.incomplete", "response.failed") for t in types) == 1
    open_item, index = None, -1
    for _, data in events[2:-1]:
        kind = data["type"]
        if kind == "response.output_item.added":
            assert open_item is None, "an item was added before the previous one was done"
            index += 1
            assert data["output_index"] == index
            open_item = data["item"]["id"]
        elif kind == "response.output_item.done":
            assert data["output_index"] == index and data["item"]["id"] == open_item
            open_item = None
        else:
            assert open_item is not None, f"{kind} outside an item"
            assert data["item_id"] == open_item and data["output_index"] == index
    assert open_item is None
    final = events[-1][1]["response"]
    assert len(final["output"]) == index + 1
    done_items = [data["item"] for _, data in events if data["type"] == "response.output_item.done"]
    assert final["output"] == done_items
