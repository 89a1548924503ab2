"""Masking upstream secrets for the config page, and restoring them when a masked value comes back.

Which values are secrets: each entry's `config` fields named by its adapter type's
`secret_fields` (`gateway.registry.secret_fields`), `settings.admin_token`, every string of the
`config` of an entry whose type this gateway does not run (the seed's `claude-web` carries a
session `cookie`), and the userinfo (`user:password@`) of URL-valued fields (`api_base`,
`proxies`, `settings.database`). Client tokens (`token:`) are not masked: the admin hands them
out and needs to see them.

A URL's userinfo is replaced by `••••••••` (`http://••••••••@proxy:3128`), the rest kept.

A secret of 20 characters or more is shown as its first 3 and last 4 characters around an
ellipsis (`sk-…abcd`); a shorter one is fully masked (`••••••••`). A value containing a `${VAR}`
reference is shown as written: it names an environment variable, it is not the secret itself.

When a config comes back with a masked value, the stored secret is kept. The stored value is
found, in order: in the entry with the same token, same field; in the entry at the same index
when the token was renamed; else in any stored secret of the same field whose mask is the same
(e.g. a duplicated entry). A masked value that matches none of these is an error: saving it
literally would silently replace a working key by `sk-…abcd`.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

from gateway import registry
from gateway.admin.entries import entries_of, pair_entries, settings_of
from gateway.config import ConfigIssue

ELLIPSIS = "…"
FULL_MASK = "••••••••"
PARTIAL_MIN_LENGTH = 20


URL_FIELDS = ("api_base", "proxies")


def _mask_url(value: str) -> str:
    scheme, sep, rest = value.partition("://")
    authority, slash, path = rest.partition("/")
    if not sep or "@" not in authority:
        return value
    return f"{scheme}://{FULL_MASK}@{authority.rpartition('@')[2]}{slash}{path}"


def mask(value: str) -> str:
    """The masked form of a secret string (see the module docstring). `${VAR}` values are kept;
    a URL keeps everything but its userinfo (unchanged when it has none)."""
    if "${" in value:
        return value
    if "://" in value:
        return _mask_url(value)
    if len(value) >= PARTIAL_MIN_LENGTH:
        return f"{value[:3]}{ELLIPSIS}{value[-4:]}"
    return FULL_MASK


def looks_masked(value: Any) -> bool:
    """True for a string that has the shape of a masked secret."""
    return isinstance(value, str) and (
        value == FULL_MASK or (ELLIPSIS in value and len(value) == 8) or f"://{FULL_MASK}@" in value
    )


def secret_slots(data: Any) -> Iterator[tuple[dict, str, str | int | None, str]]:
    """Every place a secret may sit: `(container, key, entry label, field path)`.

    `container[key]` is the value (it may be absent). The entry label is the token, else the
    index, as in `ConfigIssue`; it is None for `settings.admin_token`.
    """
    settings = settings_of(data)
    if settings is not None:
        yield settings, "admin_token", None, "settings.admin_token"
        yield settings, "database", None, "settings.database"
    for index, entry in enumerate(entries_of(data)):
        if not isinstance(entry, dict) or not isinstance(entry.get("config"), dict):
            continue
        type_name = entry.get("type")
        if not isinstance(type_name, str):
            continue
        token = entry.get("token")
        label = token if isinstance(token, str) and token else index
        config = entry["config"]
        if registry.adapter_class(type_name) is None:  # declined or unknown type: all of it
            for name in [k for k, v in config.items() if isinstance(v, str)]:
                yield config, name, label, f"config.{name}"
            continue
        for name in registry.secret_fields(type_name):
            yield config, name, label, f"config.{name}"
        for name in URL_FIELDS:
            if isinstance(config.get(name), dict):
                for key in config[name]:
                    yield config[name], key, label, f"config.{name}.{key}"
            else:
                yield config, name, label, f"config.{name}"


def mask_data(data: Any) -> Any:
    """A deep copy of config data (either shape) with every secret string masked."""
    masked = copy.deepcopy(data)
    for container, key, _, _ in secret_slots(masked):
        value = container.get(key)
        if isinstance(value, str) and value:
            container[key] = mask(value)
    return masked


def secret_values(data: Any) -> list[str]:
    """The literal secret strings of config data (not `${VAR}` references)."""
    values = []
    for container, key, _, _ in secret_slots(data):
        value = container.get(key)
        if isinstance(value, str) and value and "${" not in value:
            values.append(value)
    return values


def restore_secrets(new: Any, old: Any) -> tuple[Any, list[ConfigIssue]]:
    """A deep copy of `new` where each masked secret is replaced by the stored value from `old`.

    Returns `(data, issues)`; an issue names each masked value that matches no stored secret.
    """
    data = copy.deepcopy(new)
    old_entries = entries_of(old)
    new_entries = entries_of(data)
    pairs = pair_entries(old_entries, new_entries)
    by_field: dict[str, set[str]] = {}
    for container, key, _, _ in secret_slots(old):
        value = container.get(key)
        if isinstance(value, str) and value:
            by_field.setdefault(key, set()).add(value)

    issues: list[ConfigIssue] = []
    for container, key, label, field in secret_slots(data):
        value = container.get(key)
        if not looks_masked(value):
            continue
        stored: Any = None
        if field == "settings.admin_token":
            stored = (settings_of(old) or {}).get("admin_token")
        else:
            index = next(i for i, e in enumerate(new_entries) if isinstance(e, dict) and _holds(e.get("config"), container))
            if index in pairs:
                stored = _value_at(old_entries[pairs[index]], field)
        restored = stored if isinstance(stored, str) and mask(stored) == value else None
        if restored is None:
            same_mask = {s for s in by_field.get(key, ()) if mask(s) == value}
            if len(same_mask) == 1:
                restored = same_mask.pop()
        if restored is None:
            issues.append(
                ConfigIssue(label, field, "this is a masked value that matches no stored secret: type the secret again")
            )
        else:
            container[key] = restored
    return data, issues


def _holds(config: Any, container: dict) -> bool:
    """True when `container` is this entry's `config` or a mapping directly inside it (`proxies`)."""
    return config is container or (isinstance(config, dict) and any(v is container for v in config.values()))


def _value_at(entry: Any, field: str) -> Any:
    """The value at a dotted `field` path (`config.proxies.https`) of an entry, or None."""
    value = entry
    for part in field.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value
