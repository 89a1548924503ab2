"""Form descriptions for the config page, derived from the adapters' own config models.

Each registered adapter type's `Config` pydantic model (the one that validates the file) is
turned into a list of fields with a widget `kind`, so a new adapter gets its form for free::

    {"type": "openai", "aliases": [], "description": "...", "default_model": "gpt-4o-mini",
     "is_router": false, "secret_fields": ["api_key"],
     "fields": [{"name": "api_key", "title": "Api Key", "kind": "secret", "required": false,
                 "default": null, "options": null, "description": null, "group": "main"}, ...]}

Kinds: `string`, `secret`, `number`, `integer`, `boolean`, `enum` (with `options`), `list`
(of scalars, one per line), `map` (string → scalar, `key = value` per line); for these two,
`item` is the JSON type of the elements and `json` (unions
such as `proxies: {https: URL} | URL`: a value typed as JSON, else taken as a string).
Groups: `main` (the type's own fields, then `api_base`, `model`, `proxies`) and `sampling`
(the default sampling parameters, shown folded).
"""

from __future__ import annotations

from typing import Any

from gateway import registry
from gateway.adapter import SAMPLING_FIELDS, AdapterConfig

_COMMON = ("api_base", "model", "proxies")
_SCALARS = {"string", "number", "integer", "boolean"}


def _kind(schema: dict[str, Any]) -> tuple[str, list | None]:
    options = schema.get("anyOf") or schema.get("oneOf")
    if options:
        options = [o for o in options if o.get("type") != "null"]
        if len(options) == 1:
            return _kind(options[0])
        return "json", None
    if "enum" in schema:
        return "enum", list(schema["enum"])
    if "const" in schema:
        return "enum", [schema["const"]]
    kind = schema.get("type")
    if kind in _SCALARS:
        return kind, None
    if kind == "array" and schema.get("items", {}).get("type") in _SCALARS:
        return "list", None
    values = schema.get("additionalProperties")
    if kind == "object" and isinstance(values, dict) and values.get("type") in _SCALARS:
        return "map", None
    return "json", None


def _item_kind(schema: dict[str, Any]) -> str:
    options = [o for o in (schema.get("anyOf") or [schema]) if o.get("type") != "null"]
    inner = options[0].get("items") or options[0].get("additionalProperties") or {}
    return inner.get("type", "string")


def _order(name: str, own: bool) -> tuple[int, int]:
    if own:
        return 0, 0
    if name in _COMMON:
        return 1, _COMMON.index(name)
    return 2, SAMPLING_FIELDS.index(name) if name in SAMPLING_FIELDS else 99


def describe_type(type_name: str) -> dict[str, Any]:
    """The form description of one adapter type (see the module docstring)."""
    cls = registry.adapter_class(type_name)
    schema = cls.Config.model_json_schema(by_alias=True)
    required = set(schema.get("required", ()))
    secret = set(cls.secret_fields)
    base = set(AdapterConfig.model_fields) if issubclass(cls.Config, AdapterConfig) else set()
    fields = []
    for position, (name, prop) in enumerate(schema.get("properties", {}).items()):
        kind, options = _kind(prop)
        item = _item_kind(prop) if kind in ("list", "map") else None
        python_name = next((n for n, f in cls.Config.model_fields.items() if (f.alias or n) == name), name)
        if python_name in secret and kind == "string":
            kind = "secret"
        own = python_name not in base
        fields.append(
            {
                "name": name,
                "title": prop.get("title") or name,
                "kind": kind,
                "options": options,
                "item": item,
                "required": name in required,
                "default": prop.get("default"),
                "description": prop.get("description"),
                "group": "sampling" if python_name in SAMPLING_FIELDS and not own else "main",
                "_order": (*_order(python_name, own), position),
            }
        )
    fields.sort(key=lambda f: f.pop("_order"))
    return {
        "type": type_name,
        "aliases": sorted(t for t in registry.type_names() if t != type_name and registry.canonical_type(t) == type_name),
        "description": schema.get("description") or (cls.__doc__ or "").strip().split("\n\n")[0],
        "default_model": cls.default_model,
        "is_router": bool(getattr(cls, "is_router", False)),
        "secret_fields": sorted(secret),
        "fields": fields,
    }


def describe_all() -> dict[str, Any]:
    """`{"types": {canonical type: description}}` for every registered adapter type."""
    canonical = sorted({registry.canonical_type(t) for t in registry.type_names()})
    return {"types": {name: describe_type(name) for name in canonical}}
