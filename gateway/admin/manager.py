"""The config page's back end: validate, save, apply, record history, roll back, reload from disk.

One `ConfigManager` per process wraps the app's `Gateway` (`gateway.app.Gateway`). Every change
goes through the same steps, serialized by one lock:

1. masked secrets are restored from the running config (`gateway.admin.masking`);
2. the data is validated with the start-up rules (`gateway.config.build_config`); a problem
   raises `ConfigError` and nothing changes;
3. the file text is rendered (`gateway.admin.files.render`: YAML comments survive);
4. the version is recorded in the history, the previous file kept as `PATH.bak`, and the new
   text written atomically;
5. `Gateway.apply` swaps the running config: requests in flight finish on the config they
   started with, new ones see the new config.

A change on disk (someone edited the file) takes steps 2, 4 (history only) and 5; a bad edit
is logged, remembered in `disk_error` and otherwise ignored. The manager knows the text it
last applied, so the watcher's event for its own save finds nothing new to do.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from pathlib import Path
from typing import Any

import orjson
from ruamel.yaml.error import YAMLError

from gateway.admin import files
from gateway.admin.history import History, describe_changes
from gateway.admin.masking import mask_data, restore_secrets
from gateway.config import (
    ConfigError,
    ConfigIssue,
    GatewayConfig,
    build_config,
    parse_text,
)

log = logging.getLogger("gateway.admin")


class AdminError(Exception):
    """A refusal with an HTTP status and an OpenAI-style `code` (e.g. 409 `no_config_file`)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


class ConfigManager:
    """Validates, saves and applies configs for one `Gateway`; see the module docstring.

    Attributes: `gateway`, `path` (None when the app was built from a config object: saving is
    refused), `format` (`yaml`/`json`), `text` (the file text of the running config),
    `history` (`History` or None), `disk_error` (`{"message", "sha256", "details"}` of an
    ignored bad edit on disk, else None), `watching` (the file watcher is running).
    """

    def __init__(self, gateway) -> None:
        self.gateway = gateway
        self.path: str | None = gateway.path
        self.format = files.file_format(self.path)
        self.lock = asyncio.Lock()
        self.text: str | None = None
        self.history = History(self.path) if self.path else None
        self.disk_error: dict[str, str] | None = None
        self.watching = False  # set by gateway.admin.watcher while it runs
        if self.path:
            try:
                text = Path(self.path).read_text(encoding="utf-8")
                # the file changed between loading and now: leave it to the watcher to apply
                self.text = text if self.parse(text) == self.raw else None
            except (OSError, ConfigError) as exc:
                log.warning("cannot read %s for the config page: %s", self.path, exc)

    # -- reading ----------------------------------------------------------------------------

    @property
    def config(self) -> GatewayConfig:
        return self.gateway.runtime.config

    @property
    def raw(self) -> Any:
        """The running config's data as written in the file (`${VAR}` unexpanded)."""
        return self.config.raw

    def version(self) -> str:
        """A short fingerprint of the running config (the ETag of GET /admin/api/config)."""
        body = self.text.encode("utf-8") if self.text is not None else orjson.dumps(self.raw)
        return hashlib.sha256(body).hexdigest()[:16]

    def masked(self) -> Any:
        """The running config's data with secrets masked."""
        return mask_data(self.raw)

    def masked_text(self) -> str:
        """The file text with secrets masked (for the raw editor)."""
        if self.text is not None:
            try:
                return files.masked_text(self.text, self.format)
            except (YAMLError, ValueError, TypeError, AttributeError):  # not parseable: show the data
                log.debug("cannot mask the file text; rendering the data instead", exc_info=True)
        return files.render(self.masked(), self.format)

    # -- checking ---------------------------------------------------------------------------

    def check(self, data: Any) -> tuple[Any, GatewayConfig]:
        """(data with masked secrets restored, validated config). Raises ConfigError."""
        source = self.path or "<config>"
        restored, issues = restore_secrets(data, self.raw)
        try:
            config = build_config(restored, source)
        except ConfigError as exc:
            raise ConfigError(source, issues + _without_knock_on_errors(exc.issues)) from None
        if issues:
            raise ConfigError(source, issues)
        return restored, config

    def parse(self, text: str) -> Any:
        """Parse file text in this file's format. Raises ConfigError on a syntax error."""
        return parse_text(text, self.path or f"<config.{self.format}>")

    # -- changing ---------------------------------------------------------------------------

    def _require_file(self) -> str:
        if not self.path:
            raise AdminError(
                409,
                "no_config_file",
                "This gateway was started from a config object, not a file, so there is nowhere to save: "
                "start it with --config PATH to edit the config here.",
            )
        return self.path

    async def save_data(self, data: Any, source: str = "api", if_match: str | None = None) -> dict[str, Any]:
        """Validate, write and apply config `data` (either shape, masked secrets allowed)."""
        self._require_file()
        async with self.lock:
            self._check_version(if_match)
            restored, config = self.check(data)
            text = files.render(restored, self.format, self.text)
            return await self._commit(text, restored, config, describe_changes(self.raw, restored), source)

    async def save_text(self, text: str, source: str = "raw", if_match: str | None = None) -> dict[str, Any]:
        """Validate, write and apply a whole file text (masked secrets allowed; comments kept)."""
        self._require_file()
        async with self.lock:
            self._check_version(if_match)
            restored, config = self.check(self.parse(text))
            final = files.render(restored, self.format, text)
            return await self._commit(final, restored, config, describe_changes(self.raw, restored), source)

    async def validate_data(self, data: Any) -> GatewayConfig:
        """The same checks as a save, without writing or applying. Raises ConfigError."""
        return self.check(data)[1]

    async def validate_text(self, text: str) -> GatewayConfig:
        """The same checks as a raw save, without writing or applying. Raises ConfigError."""
        return self.check(self.parse(text))[1]

    async def rollback(self, version_id: int) -> dict[str, Any]:
        """Make an earlier version current again: a new, validated save of that version's text."""
        path = self._require_file()
        async with self.lock:
            version = await asyncio.to_thread(self.history.get, version_id)
            if version is None:
                raise AdminError(404, "version_not_found", f"There is no version {version_id} in the history.")
            data = parse_text(version["text"], path)
            config = build_config(data, path)
            summary = f"rolled back to version {version_id}: {describe_changes(self.raw, data)}"
            return await self._commit(version["text"], data, config, summary, "rollback")

    def _check_version(self, if_match: str | None) -> None:
        if if_match and if_match.strip().strip('"') not in ("*", self.version()):
            raise AdminError(
                412,
                "config_changed",
                "The config changed since you loaded it (saved elsewhere or edited on disk); reload and try again.",
            )

    async def _commit(self, text: str, data: Any, config: GatewayConfig, summary: str, source: str) -> dict[str, Any]:
        if text == self.text:
            return {"changed": False, "version": None, "summary": "no changes", "etag": self.version()}
        previous = self.text
        version = await asyncio.to_thread(self._write, previous, text, summary, source)
        self.text = text
        self.disk_error = None
        self.gateway.apply(config)
        log.info("config saved and applied (%s): %s", source, summary)
        return {"changed": True, "version": version["id"], "summary": summary, "etag": self.version(), "warnings": config.warnings}

    def _write(self, previous: str | None, text: str, summary: str, source: str) -> dict[str, Any]:
        version = self.history.record(previous, text, summary, source)
        try:
            files.backup(self.path)
            files.atomic_write(self.path, text)
        except OSError as exc:
            self.history.remove(version["id"])
            raise AdminError(500, "write_failed", f"Could not write {self.path}: {exc.strerror or exc}") from None
        return version

    async def reload_from_disk(self) -> bool:
        """Apply the file on disk if it changed and is valid; True when a new config was applied.

        A bad edit is logged once and remembered in `disk_error`; the running config stays.
        """
        if not self.path:
            return False
        async with self.lock:
            try:
                text = await asyncio.to_thread(Path(self.path).read_text, encoding="utf-8")
            except OSError:
                return False  # being replaced, or gone for now: the next event will tell
            if text == self.text:
                self.disk_error = None
                return False
            try:
                data = self.parse(text)
                config = build_config(data, self.path)
            except ConfigError as exc:
                digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
                if not self.disk_error or self.disk_error["sha256"] != digest:
                    log.warning("%s changed on disk but cannot be loaded; keeping the running config: %s", self.path, exc.line())
                self.disk_error = {"message": exc.line(), "sha256": digest, "details": [i.as_dict() for i in exc.issues]}
                return False
            summary = f"edited on disk: {describe_changes(self.raw, data)}"
            await asyncio.to_thread(self.history.record, self.text, text, summary, "disk")
            self.text = text
            self.disk_error = None
            self.gateway.apply(config)
            log.info("config reloaded from %s: %s", self.path, summary)
            return True

    # -- history ----------------------------------------------------------------------------

    async def versions(self) -> list[dict[str, Any]]:
        """The history, newest first; the one matching the running file is marked `current`."""
        if self.history is None:
            return []
        versions = await asyncio.to_thread(self.history.list)
        current = hashlib.sha256(self.text.encode("utf-8")).hexdigest() if self.text is not None else None
        for version in versions:
            version["current"] = version.pop("sha256", None) == current
        return versions

    async def diff(self, version_id: int) -> dict[str, Any]:
        """One version and the unified diff from it to the running file, secrets masked."""
        import difflib

        if self.history is None:
            raise AdminError(404, "version_not_found", f"There is no version {version_id} in the history.")
        version = await asyncio.to_thread(self.history.get, version_id)
        if version is None:
            raise AdminError(404, "version_not_found", f"There is no version {version_id} in the history.")
        old = _masked_or_none(version["text"], self.format)
        new = _masked_or_none(self.text or "", self.format)
        diff = "".join(
            difflib.unified_diff(
                old.splitlines(keepends=True),
                new.splitlines(keepends=True),
                fromfile=f"version {version_id}",
                tofile="current",
            )
        )
        info = {k: v for k, v in version.items() if k not in ("text", "sha256")}
        return {**info, "diff": diff}


def _without_knock_on_errors(issues: list[ConfigIssue]) -> list[ConfigIssue]:
    """Drop "refers to token 'X'" issues when entry X has problems of its own: the pool is not
    wrong, X is (an invalid entry is left out, so every reference to it would fail too)."""
    broken = {i.entry for i in issues if isinstance(i.entry, str) and not i.message.startswith("refers to token")}
    kept = [i for i in issues if not (i.message.startswith("refers to token '") and i.message.split("'")[1] in broken)]
    return kept or issues


def _masked_or_none(text: str, fmt: str) -> str:
    try:
        return files.masked_text(text, fmt)
    except (YAMLError, ValueError, TypeError, AttributeError):
        return "(this version cannot be shown: it does not parse)\n"


__all__ = ["AdminError", "ConfigIssue", "ConfigManager"]
