"""Every applied version of the config file, kept next to it, and a one-line summary of changes.

Versions live in `FOLDER/.history/FILENAME/NNNNNN.json` beside the config file (created with
mode 0700: they hold the file's text, secrets included), one JSON object each::

    {"id": 3, "time": "2026-01-31T12:00:00Z", "source": "page" | "api" | "raw" | "rollback"
     | "disk" | "baseline", "summary": "changed demo-mock: config.reply", "sha256": ..., "text": ...}

A version is published with `os.link` from a temp file, so two writers (two workers) never
overwrite one another, and the same text is never recorded twice in a row.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from gateway.admin.entries import entries_of, pair_entries, settings_of


def sha256(text: str) -> str:
    """Hex SHA-256 of a text's UTF-8 bytes."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class History:
    """The versions of one config file. Methods are synchronous (small files); call from a thread."""

    def __init__(self, config_path: str | os.PathLike) -> None:
        path = Path(config_path)
        self.folder = path.parent / ".history" / path.name

    def _files(self) -> list[Path]:
        if not self.folder.is_dir():
            return []
        return sorted(p for p in self.folder.iterdir() if p.suffix == ".json" and p.stem.isdigit())

    def _read(self, path: Path) -> dict[str, Any] | None:
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None

    def list(self) -> list[dict[str, Any]]:
        """Every version without its text, newest first."""
        versions = []
        for path in reversed(self._files()):
            version = self._read(path)
            if version is not None:
                versions.append({k: v for k, v in version.items() if k != "text"})
        return versions

    def get(self, version_id: int) -> dict[str, Any] | None:
        """One version with its text, or None."""
        path = self.folder / f"{version_id:06d}.json"
        return self._read(path) if path.is_file() else None

    def latest(self) -> dict[str, Any] | None:
        """The newest version (with its text), or None when there is none."""
        files = self._files()
        return self._read(files[-1]) if files else None

    def record(self, previous_text: str | None, text: str, summary: str, source: str) -> dict[str, Any]:
        """Record `text` as the newest version; returns it (without text).

        When the newest recorded version is not `previous_text` (the first save, or the file
        was changed while nothing watched it), `previous_text` is recorded first as a
        `baseline`, so every version the gateway served can be rolled back to. Recording the
        text that is already the newest version does nothing (another worker got there first).
        """
        latest = self.latest()
        if latest is not None and latest.get("sha256") == sha256(text):
            return {k: v for k, v in latest.items() if k != "text"}
        if previous_text is not None and (latest is None or latest.get("sha256") != sha256(previous_text)):
            note = (
                "the file as it was before the first save from the config page"
                if latest is None
                else "the file as it was found (changed outside the config page)"
            )
            self._add(previous_text, note, "baseline")
        return self._add(text, summary, source)

    def _add(self, text: str, summary: str, source: str) -> dict[str, Any]:
        self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        files = self._files()
        next_id = int(files[-1].stem) + 1 if files else 1
        version = {
            "id": next_id,
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "source": source,
            "summary": summary,
            "sha256": sha256(text),
            "text": text,
        }
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=self.folder)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(version, handle, ensure_ascii=False, indent=1)
                handle.flush()
                os.fsync(handle.fileno())
            while True:
                try:
                    os.link(tmp, self.folder / f"{version['id']:06d}.json")
                    break
                except FileExistsError:
                    version["id"] += 1
        finally:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        return {k: v for k, v in version.items() if k != "text"}

    def remove(self, version_id: int) -> None:
        """Forget a version (used when writing the config file failed after recording it)."""
        with contextlib.suppress(OSError):
            (self.folder / f"{version_id:06d}.json").unlink()


# -- summaries --------------------------------------------------------------------------------


def _label(entry: Any, index: int) -> str:
    if isinstance(entry, dict):
        if isinstance(entry.get("name"), str) and entry["name"]:
            return entry["name"]
        if isinstance(entry.get("type"), str):
            return f"{entry['type']}#{index}"
    return f"entry #{index}"


def _changed_fields(old: Any, new: Any, prefix: str = "") -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        fields = []
        for key in list(old) + [k for k in new if k not in old]:
            path = f"{prefix}.{key}" if prefix else str(key)
            if key not in new or key not in old:
                fields.append(path)
            elif key == "config" and not prefix:
                fields.extend(_changed_fields(old[key], new[key], path))
            elif old[key] != new[key]:
                fields.append(path)
        return fields
    return [prefix or "value"] if old != new else []


def describe_changes(old: Any, new: Any) -> str:
    """One line naming what changed between two configs: entries added, removed, changed (by
    field name, never by value, so no secret leaks), settings changed, entries reordered."""
    parts: list[str] = []
    if isinstance(old, list) != isinstance(new, list):
        parts.append("changed the file's shape to " + ("a list of tokens" if isinstance(new, list) else "{settings, tokens}"))
    for key in _changed_fields(settings_of(old) or {}, settings_of(new) or {}):
        parts.append(f"changed settings.{key}")
    old_entries, new_entries = entries_of(old), entries_of(new)
    matched = pair_entries(old_entries, new_entries)
    for n, entry in enumerate(new_entries):
        if n not in matched:
            kind = entry.get("type") if isinstance(entry, dict) else "?"
            parts.append(f"added {_label(entry, n)} ({kind})")
            continue
        o = matched[n]
        fields = _changed_fields(old_entries[o], entry)
        if fields:
            parts.append(f"changed {_label(entry, n)}: {', '.join(fields)}")
    for o, entry in enumerate(old_entries):
        if o not in matched.values():
            parts.append(f"removed {_label(entry, o)}")
    kept = [matched[n] for n in sorted(matched)]
    if kept != sorted(kept):
        parts.append("reordered tokens")
    return "; ".join(parts) if parts else "no change to the settings or tokens (layout or comments only)"
