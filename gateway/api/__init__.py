"""HTTP surfaces beyond `/v1/chat/completions` (CONTRACT.md §9, §10).

`messages/` (Anthropic Messages ingress), `embeddings.py` (`/v1/embeddings`), `passthrough.py`
(native pass-through), with `asgi.py` and `relay.py` as their shared plumbing. Each module's
`routes(gateway)` returns its Starlette routes; `gateway.app` mounts them.
"""
