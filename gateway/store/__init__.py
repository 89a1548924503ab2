"""Durable state (CONTRACT.md §8): the SQL database behind usage (§6) and stored responses (§9).

`gateway.store.database` holds the engine and the one `metadata` every table registers with;
feature modules define their tables on `metadata` (e.g. `gateway/usage/`, `gateway/responses/`)
and import nothing else from here but `Database` and `metadata`.
"""

from gateway.store.database import Database, database_url, metadata

__all__ = ["Database", "database_url", "metadata"]
