"""Deterministic embedding vectors for the fake upstreams: the same input always gets the same
vector, so a test can compute what the client must receive."""

from __future__ import annotations

import hashlib


def vector(item, dimensions: int) -> list[float]:
    """`dimensions` floats in [-1, 1) for `item` (a string or a list of token ids), exactly
    representable as float32 (multiples of 1/128), so base64 float32 round trips are exact."""
    seed = hashlib.sha256(repr(item).encode()).digest()
    return [((seed[i % len(seed)] + 7 * i) % 256 - 128) / 128 for i in range(dimensions)]
