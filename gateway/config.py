"""Loading and validating the config file (CONTRACT.md §2).

A config is YAML (`.yaml`/`.yml`) or JSON (`.json`), in one of two shapes:

1. a list of token entries (the seed openai-style-api's format), or
2. `{settings: {...}, tokens: [...token entries...]}`.

A token entry is `{token, type, config, name?, enabled?, internal?}`. Each adapter type has a
pydantic model for its `config`, registered in `gateway.registry`. `${VAR}` and
`${VAR:-default}` in any string are replaced from the environment at load time; the file's own
text (`GatewayConfig.raw`) keeps them as written.

Every problem is reported as a `ConfigIssue(entry, field, message)`; `ConfigError` carries all
of them and renders the first as one line naming file, entry and field.
"""

from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from gateway import registry
from gateway.keys.limits import LIMIT_FIELDS, FieldError, KeyLimits, zone

log = logging.getLogger("gateway.config")


_VISIBLE_ASCII = re.compile(r"[\x21-\x7e]+")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _visible_ascii(value: str | None) -> str | None:
    """Tokens travel in HTTP headers: printable ASCII without spaces only (a non-ASCII token
    could never be presented by a normal client; CR/LF would split headers)."""
    if value is not None and not _VISIBLE_ASCII.fullmatch(value):
        raise ValueError("must be visible ASCII characters only (no spaces, control or non-ASCII characters)")
    return value


def _no_control(value: str | None) -> str | None:
    """Names reach response headers and log lines: no control characters (CR, LF, NUL...)."""
    if value is not None and _CONTROL.search(value):
        raise ValueError("must not contain control characters (CR, LF, tab, NUL...)")
    return value


class Cooldown(BaseModel):
    """Router member cooldown (§4): `failures` within `window` s → skipped `seconds` s, doubling up to `max_seconds`."""

    model_config = ConfigDict(extra="forbid")
    failures: int = Field(3, ge=1)
    window: float = Field(60.0, gt=0)
    seconds: float = Field(5.0, ge=0)
    max_seconds: float = Field(300.0, ge=0)


class UsageSettings(BaseModel):
    """`settings.usage` (§6): how usage events are written. `flush_seconds`: the ledger writes
    its queue every so often, in batches of at most `batch_max` rows; `queue_max` bounds the
    events waiting (more are dropped and counted); rows older than `retention_days` days are
    deleted (0: kept forever)."""

    model_config = ConfigDict(extra="forbid")
    flush_seconds: float = Field(1.0, gt=0)
    retention_days: float = Field(90.0, ge=0)
    queue_max: int = Field(50_000, ge=1)
    batch_max: int = Field(500, ge=1)


class PriceOverride(BaseModel):
    """One `settings.prices` entry (§6): USD per million tokens. Cached prompt tokens cost
    `cached_input_per_mtok`, else the input price."""

    model_config = ConfigDict(extra="forbid")
    input_per_mtok: float = Field(ge=0)
    output_per_mtok: float = Field(ge=0)
    cached_input_per_mtok: float | None = Field(None, ge=0)


class LimitsSettings(BaseModel):
    """`settings.limits` (§6, §8): `default_output_reserve` tokens reserved for the answer when a
    request names no `max_tokens`/`max_completion_tokens`; `on_store_error` what to do while the
    shared counter store is unreachable (`local`: per-process counters, `closed`: 503)."""

    model_config = ConfigDict(extra="forbid")
    default_output_reserve: int = Field(1024, ge=0)
    on_store_error: Literal["local", "closed"] = "local"


class MetricsSettings(BaseModel):
    """`settings.metrics` (§7): `public: true` serves `/metrics` without the admin token."""

    model_config = ConfigDict(extra="forbid")
    public: bool = False


class Settings(BaseModel):
    """The optional `settings` block. Times are in seconds."""

    model_config = ConfigDict(extra="forbid")
    admin_token: str | None = None
    cors_allow_origins: list[str] = Field(default_factory=lambda: ["*"])
    request_timeout: float = Field(300.0, gt=0)
    connect_timeout: float = Field(10.0, gt=0)
    stream_idle_timeout: float = Field(120.0, gt=0)
    log_level: str = "info"
    cooldown: Cooldown = Field(default_factory=Cooldown)
    # Limits and hardening (README): request size, connection limits, forwarded headers.
    max_request_bytes: int = Field(16 * 1024 * 1024, ge=1024)
    max_json_containers: int = Field(50_000, ge=100)
    max_json_values: int = Field(500_000, ge=100)
    max_header_bytes: int = Field(65536, ge=1024)
    header_timeout: float = Field(10.0, gt=0)
    body_timeout: float = Field(60.0, gt=0)
    keep_alive_timeout: float = Field(5.0, gt=0)
    max_connections: int | None = Field(None, ge=1)
    trusted_proxies: list[str] = Field(default_factory=list)
    # §8: SQL store URL (`sqlite:///PATH` or `postgresql://...`); None: gateway.db beside the config.
    database: str | None = None
    # §6: usage ledger and price overrides ({MODEL: {input_per_mtok, output_per_mtok, cached_input_per_mtok}}).
    usage: UsageSettings = Field(default_factory=UsageSettings)
    prices: dict[str, PriceOverride] = Field(default_factory=dict)
    # §8: shared counters, round-robin positions and cooldowns for N workers / replicas.
    redis_url: str | None = None
    # §8: how long one Redis call may take (connect included) before it counts as unavailable.
    redis_timeout: float = Field(1.0, gt=0, le=30)
    # §6/§7: budget periods' time zone, limits, metrics and the access log.
    timezone: str = "UTC"
    limits: LimitsSettings = Field(default_factory=LimitsSettings)
    metrics: MetricsSettings = Field(default_factory=MetricsSettings)
    access_log: bool = True

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        zone(value)
        return value

    _admin_token = field_validator("admin_token")(_visible_ascii)


class _RawEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")
    token: str = Field(min_length=1)
    type: str = Field(min_length=1)
    name: str | None = None
    enabled: bool = True
    internal: bool = False
    config: dict[str, Any] = Field(default_factory=dict)
    # §6 limit fields: shapes checked by KeyLimits.from_fields (so errors name the field).
    models: Any = None
    expires: Any = None
    rpm_limit: Any = None
    tpm_limit: Any = None
    max_parallel_requests: Any = None
    max_budget: Any = None
    token_budget: Any = None
    budget_duration: Any = None

    _token = field_validator("token")(_visible_ascii)
    _name = field_validator("name")(_no_control)


@dataclass(frozen=True, slots=True)
class Entry:
    """One enabled token entry with its `config` validated by its adapter type's model."""

    index: int
    token: str
    type: str
    name: str
    internal: bool
    config: BaseModel
    limits: KeyLimits | None = None  # §6; None when the entry sets no limit field


@dataclass(frozen=True, slots=True)
class ConfigIssue:
    """One problem: `entry` is the token (or the entry's index when it has none), `field` a dotted path."""

    entry: str | int | None
    field: str | None
    message: str

    def as_dict(self) -> dict:
        return {"entry": self.entry, "field": self.field, "message": self.message}


class ConfigError(Exception):
    """The config cannot be loaded. `issues` lists every problem found; `str()` is one line."""

    def __init__(self, source: str, issues: list[ConfigIssue]) -> None:
        self.source = source
        self.issues = issues
        super().__init__(self.line())

    def line(self) -> str:
        first = self.issues[0]
        where = [self.source]
        if first.entry is not None:
            where.append(f"entry {first.entry!r}" if isinstance(first.entry, str) else f"entry #{first.entry}")
        if first.field:
            where.append(f"field {first.field!r}")
        more = f" (and {len(self.issues) - 1} more problem(s))" if len(self.issues) > 1 else ""
        return f"{': '.join(where)}: {first.message}{more}"


@dataclass
class GatewayConfig:
    """A loaded config: settings, enabled entries by token, and the file's data as written."""

    settings: Settings
    entries: dict[str, Entry]
    raw: Any
    source: str = "<memory>"
    warnings: list[str] = field(default_factory=list)

    def secrets(self) -> list[str]:
        """Every secret value (upstream keys and secrets, the admin token) for scrubbing."""
        values = [self.settings.admin_token] if self.settings.admin_token else []
        for entry in self.entries.values():
            for name in registry.secret_fields(entry.type):
                value = getattr(entry.config, name, None)
                if isinstance(value, str) and value:
                    values.append(value)
            proxies = getattr(entry.config, "proxies", None)
            urls = [getattr(entry.config, "api_base", None), *(proxies.values() if isinstance(proxies, dict) else [proxies])]
            values.extend(p for p in map(_url_password, urls) if p)
        values.extend(p for p in [_url_password(self.settings.database)] if p)
        return values


def _url_password(url: Any) -> str | None:
    """The password in a URL's userinfo (`scheme://user:PASSWORD@host`), when it has one of at
    least 6 characters (shorter ones would scrub ordinary words out of answers)."""
    if not isinstance(url, str) or "@" not in url or "://" not in url:
        return None
    userinfo = url.split("://", 1)[1].split("/", 1)[0].rpartition("@")[0]
    password = userinfo.partition(":")[2]
    return password if len(password) >= 6 else None


# -- reading ----------------------------------------------------------------------------------


def read_file(path: str | os.PathLike) -> Any:
    """Parse a config file by its extension. Raises ConfigError (unreadable file, syntax error)."""
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(source, [ConfigIssue(None, None, f"cannot read file: {exc.strerror or exc}")]) from None
    return parse_text(text, source)


def parse_text(text: str, source: str) -> Any:
    """Parse config text as JSON for `*.json`, else YAML. Raises ConfigError on a syntax error."""
    try:
        if source.endswith(".json"):
            return json.loads(text)
        return yaml.safe_load(text)
    except json.JSONDecodeError as exc:
        msg = f"invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}"
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        msg = f"invalid YAML at line {mark.line + 1}, column {mark.column + 1}: {problem}" if mark else f"invalid YAML: {problem}"
    raise ConfigError(source, [ConfigIssue(None, None, msg)])


def load_config(path: str | os.PathLike, environ: dict[str, str] | None = None) -> GatewayConfig:
    """Read and validate the config file at `path`. Raises ConfigError."""
    return build_config(read_file(path), str(path), environ)


# -- validating -------------------------------------------------------------------------------

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-(.*?))?\}")


class _MissingVariable(Exception):
    def __init__(self, name: str, path: str) -> None:
        self.name, self.path = name, path


def interpolate(value: Any, environ: dict[str, str], path: str = "") -> Any:
    """Replace `${VAR}` / `${VAR:-default}` in every string inside `value` (returns a copy)."""
    if isinstance(value, str):
        if "${" not in value:
            return value

        def sub(match: re.Match) -> str:
            name, default = match.group(1), match.group(2)
            if name in environ and (environ[name] != "" or default is None):
                return environ[name]
            if default is not None:
                return default
            raise _MissingVariable(name, path)

        return _VAR.sub(sub, value)
    if isinstance(value, dict):
        return {k: interpolate(v, environ, f"{path}.{k}" if path else str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, environ, f"{path}[{i}]") for i, v in enumerate(value)]
    return value


def _loc(prefix: str, loc: tuple) -> str:
    parts = [prefix] if prefix else []
    for item in loc:
        if isinstance(item, int) and parts:
            parts[-1] += f"[{item}]"
        else:
            parts.append(str(item))
    return ".".join(parts)


def _pydantic_issues(exc: ValidationError, entry: str | int | None, prefix: str) -> list[ConfigIssue]:
    issues = []
    for err in exc.errors(include_url=False):
        message = err["msg"]
        if err["type"] == "extra_forbidden":
            message = "unknown field"
        issues.append(ConfigIssue(entry, _loc(prefix, err["loc"]), message))
    return issues


def split_shape(data: Any) -> tuple[dict, list]:
    """(settings, token entries) from either top-level shape. Raises ConfigError-ready ValueError."""
    if data is None:
        return {}, []
    if isinstance(data, list):
        return {}, data
    if isinstance(data, dict):
        unknown = set(data) - {"settings", "tokens"}
        if unknown:
            raise ValueError(f"unknown top-level key(s): {', '.join(sorted(map(str, unknown)))}; expected 'settings' and 'tokens'")
        settings = data.get("settings") or {}
        tokens = data.get("tokens") or []
        if not isinstance(settings, dict):
            raise ValueError("'settings' must be a mapping")
        if not isinstance(tokens, list):
            raise ValueError("'tokens' must be a list of token entries")
        return settings, tokens
    raise ValueError("the config must be a list of token entries or a mapping with 'settings' and 'tokens'")


def build_config(data: Any, source: str = "<memory>", environ: dict[str, str] | None = None) -> GatewayConfig:
    """Validate parsed config data (either shape). Raises ConfigError listing every problem."""
    environ = dict(os.environ) if environ is None else environ
    issues: list[ConfigIssue] = []
    warnings: list[str] = []
    try:
        settings_data, token_data = split_shape(data)
    except ValueError as exc:
        raise ConfigError(source, [ConfigIssue(None, None, str(exc))]) from None

    settings = Settings()
    try:
        settings = Settings.model_validate(interpolate(settings_data, environ, "settings"))
    except _MissingVariable as exc:
        issues.append(ConfigIssue(None, exc.path, f"environment variable {exc.name} is not set"))
    except ValidationError as exc:
        issues.extend(_pydantic_issues(exc, None, "settings"))
    if settings.admin_token is None and environ.get("GATEWAY_ADMIN_TOKEN"):
        settings = settings.model_copy(update={"admin_token": environ["GATEWAY_ADMIN_TOKEN"]})

    entries: dict[str, Entry] = {}
    seen: set[str] = set()
    for index, item in enumerate(token_data):
        entry, entry_issues, warning = _build_entry(index, item, environ)
        issues.extend(entry_issues)
        if warning:
            warnings.append(warning)
        token = item.get("token") if isinstance(item, dict) else None
        if isinstance(token, str) and token:
            if token in seen:
                issues.append(ConfigIssue(token, "token", "duplicate token: another entry already uses it"))
            seen.add(token)
        if entry is not None and entry.token not in entries:
            entries[entry.token] = entry

    issues.extend(_check_references(entries))
    if issues:
        raise ConfigError(source, issues)
    for warning in warnings:
        log.warning("%s: %s", source, warning)
    return GatewayConfig(settings=settings, entries=entries, raw=data, source=source, warnings=warnings)


def _build_entry(index: int, item: Any, environ: dict[str, str]) -> tuple[Entry | None, list[ConfigIssue], str | None]:
    if not isinstance(item, dict):
        return None, [ConfigIssue(index, None, "a token entry must be a mapping with 'token', 'type' and 'config'")], None
    label: str | int = item["token"] if isinstance(item.get("token"), str) and item["token"] else index
    try:
        raw = _RawEntry.model_validate(interpolate(item, environ))
    except _MissingVariable as exc:
        return None, [ConfigIssue(label, exc.path, f"environment variable {exc.name} is not set")], None
    except ValidationError as exc:
        return None, _pydantic_issues(exc, label, ""), None
    if raw.type in registry.DECLINED_TYPES:
        return None, [], f"entry {label!r}: type '{raw.type}' is not supported by this gateway; entry skipped"
    adapter = registry.adapter_class(raw.type)
    if adapter is None:
        known = ", ".join(registry.type_names())
        return None, [ConfigIssue(label, "type", f"unknown adapter type '{raw.type}' (known: {known})")], None
    try:
        config = adapter.Config.model_validate(raw.config)
    except ValidationError as exc:
        return None, _pydantic_issues(exc, label, "config"), None
    try:
        limits = KeyLimits.from_fields({f: getattr(raw, f) for f in LIMIT_FIELDS})
    except FieldError as exc:
        return None, [ConfigIssue(label, exc.field, str(exc))], None
    if not raw.enabled:
        return None, [], None
    name = raw.name or f"{registry.canonical_type(raw.type)}#{index}"
    return Entry(index, raw.token, registry.canonical_type(raw.type), name, raw.internal, config, limits), [], None


def _check_references(entries: dict[str, Entry]) -> list[ConfigIssue]:
    """Router pools must name enabled tokens, and routing must not loop."""
    issues: list[ConfigIssue] = []
    graph: dict[str, list[str]] = {}
    fields: dict[tuple[str, str], str] = {}  # (token, referenced token) → the field naming it
    for token, entry in entries.items():
        refs = registry.adapter_class(entry.type).references(entry.config)
        graph[token] = [r for r in refs if r in entries]
        for field_name, ref in _labelled_refs(entry):
            fields.setdefault((token, ref), field_name)
            if ref not in entries:
                issues.append(ConfigIssue(token, field_name, f"refers to token '{ref}', which is not a (enabled) token of this config"))
    state: dict[str, int] = {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in graph.get(node, ()):
            if state.get(nxt) == 1:
                cycle = stack[stack.index(nxt):] + [nxt] if nxt in stack else [node, nxt]
                where = fields.get((node, nxt), "config")
                issues.append(ConfigIssue(node, where, "routing cycle: " + " -> ".join(_name(entries, t) for t in cycle)))
            elif state.get(nxt) is None:
                visit(nxt, stack + [nxt])
        state[node] = 2

    for token in graph:
        if token not in state:
            visit(token, [token])
    return issues


def _labelled_refs(entry: Entry) -> list[tuple[str, str]]:
    return registry.adapter_class(entry.type).labelled_references(entry.config)


def _name(entries: dict[str, Entry], token: str) -> str:
    return entries[token].name
