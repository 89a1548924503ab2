"""HTTP surfaces beyond `/v1/chat/completions` (CONTRACT.md §9, §10).

`responses/` (the Responses and Conversations API, with its own `mount(app)`), `messages/`
(Anthropic Messages ingress), `embeddings.py` (`/v1/embeddings`), `passthrough.py` (native
pass-through), with `asgi.py` and `relay.py` as their shared plumbing. Each of the others'
`routes(gateway)` returns its Starlette routes; `gateway.app` mounts them.
"""
