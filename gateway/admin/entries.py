"""Reading the two config shapes (CONTRACT.md §2) and pairing entries across two versions.

Entries of two versions are paired by `token`. An entry whose token is gone is paired with the
new entry at the same position when that one has a new token and the same adapter type: the
admin renamed the token (its secrets, comments and history follow it).
"""

from __future__ import annotations

from typing import Any

from gateway import registry


def entries_of(data: Any) -> list:
    """The token entries of config data of either shape (a list, or `{settings, tokens}`)."""
    if isinstance(data, list):
        return data
    if isinstance(data, dict) and isinstance(data.get("tokens"), list):
        return data["tokens"]
    return []


def settings_of(data: Any) -> dict | None:
    """The `settings` mapping, or None (list shape, or none written)."""
    if isinstance(data, dict) and isinstance(data.get("settings"), dict):
        return data["settings"]
    return None


def token_of(item: Any) -> str | None:
    """An entry's token when it is a non-empty string."""
    token = item.get("token") if isinstance(item, dict) else None
    return token if isinstance(token, str) and token else None


def _type_of(item: Any) -> str | None:
    kind = item.get("type") if isinstance(item, dict) else None
    return registry.canonical_type(kind) if isinstance(kind, str) else None


def pair_entries(old: list, new: list) -> dict[int, int]:
    """`{new index: old index}` for the entries of `new` that continue an entry of `old`."""
    old_index: dict[str, int] = {}
    for index, item in enumerate(old):
        token = token_of(item)
        if token is not None:
            old_index.setdefault(token, index)
    new_tokens = {token_of(item) for item in new}
    pairs: dict[int, int] = {}
    used: set[int] = set()
    for position, item in enumerate(new):
        index = old_index.get(token_of(item))
        if index is not None and index not in used:
            pairs[position] = index
            used.add(index)
    for position, item in enumerate(new):
        if position in pairs or position >= len(old) or position in used:
            continue
        before = old[position]
        if token_of(before) not in new_tokens and token_of(item) not in old_index and _type_of(before) == _type_of(item):
            pairs[position] = position  # renamed token
            used.add(position)
    return pairs
