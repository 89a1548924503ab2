"""Tool call ids that fit an upstream's rules, derived from the client's ids without server state.

A conversation's tool call ids are minted by whichever provider answered that turn (OpenAI
`call_...`, Anthropic `toolu_...`, the gateway's Gemini ids, Moonshot's `functions.get:3`, ...)
and sent back by the client on every later turn, possibly to a different provider. Each
provider has its own rules for ids it is sent:

- Anthropic: `tool_use.id` and `tool_result.tool_use_id` must match `^[a-zA-Z0-9_-]+$`
  (the API's 400 `String should match pattern '^[a-zA-Z0-9_-]+$'`; anthropics/anthropic-sdk-python#494
  threads, litellm and LibreChat reports of switching providers mid-conversation);
- OpenAI: at most 40 characters (400 `string_above_max_length`; agno#5382, openclaw#875).

`fit_tool_id` maps an id deterministically: an id that already fits is sent unchanged; any other
is replaced by its allowed characters (others become `_`), cut to leave room, plus `_` and 16
hex digits of the SHA-256 of the original. The same client id therefore always maps to the same
upstream id (a `tool_use` and its `tool_result` agree, across requests and gateway processes),
and two different ids never collide in practice. The upstream never echoes history ids back, so
the client keeps its own ids.
"""

from __future__ import annotations

import hashlib
import re

ANTHROPIC_TOOL_ID = re.compile(r"^[a-zA-Z0-9_-]+$")
_NOT_ANTHROPIC = re.compile(r"[^a-zA-Z0-9_-]")
HASH_DIGITS = 16


def fit_tool_id(call_id: str, max_length: int = 64) -> str:
    """`call_id` if it matches `^[a-zA-Z0-9_-]+$` and has at most `max_length` characters; else
    `<sanitized prefix>_<16 hex of sha256(call_id)>` (at most `max_length` characters, which must
    be at least 17)."""
    if len(call_id) <= max_length and ANTHROPIC_TOOL_ID.match(call_id):
        return call_id
    digest = hashlib.sha256(call_id.encode("utf-8")).hexdigest()[:HASH_DIGITS]
    prefix = _NOT_ANTHROPIC.sub("_", call_id)[: max_length - HASH_DIGITS - 1]
    return f"{prefix}_{digest}" if prefix else digest
