"""Writing the config file: YAML round-trip (comments and key order survive), atomic replace, backup.

`render(data, fmt, base_text)` turns config data into file text. For YAML the existing text is
loaded with ruamel.yaml's round-trip loader and updated in place to match `data` (mappings key by
key, the token list entry by entry matched by `token`, renamed tokens by position), so comments
and key order on everything untouched survive; new keys and entries are appended. JSON files are
written as JSON (2-space indent). The result is always re-parsed and checked to equal `data`.

`atomic_write(path, text)` writes a temp file in the same folder, fsyncs it and `os.replace`s
the config, so a reader sees the old file or the new one, never a half-written one.
`backup(path)` keeps the previous file as `PATH.bak` the same way.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import YAMLError

from gateway.admin.entries import pair_entries, token_of
from gateway.admin.masking import mask, secret_slots
from gateway.config import ConfigError, parse_text

log = logging.getLogger("gateway.admin")

TEMP_PREFIX = ".tmp-"


def file_format(path: str | os.PathLike | None) -> str:
    """`json` for a `*.json` path, else `yaml` (the rule `gateway.config.parse_text` uses)."""
    return "json" if path is not None and str(path).endswith(".json") else "yaml"


# -- YAML round trip --------------------------------------------------------------------------


def _guess_indent(text: str) -> tuple[int, int, int]:
    """(mapping indent, sequence indent, dash offset) as used in `text`; defaults 2, 4, 2."""
    mapping, offset = None, None
    lines = [(len(l) - len(l.lstrip(" ")), l.strip()) for l in text.splitlines() if l.strip() and not l.strip().startswith("#")]
    for (ind, line), (next_ind, next_line) in itertools.pairwise(lines):
        if not line.endswith(":") or line.startswith("- ") or next_ind <= ind:
            continue
        if next_line.startswith("- "):
            offset = offset if offset is not None else next_ind - ind
        elif mapping is None:
            mapping = next_ind - ind
        if mapping is not None and offset is not None:
            break
    mapping = mapping or 2
    offset = 2 if offset is None else offset
    return mapping, offset + 2, offset


def _yaml(text: str = "") -> YAML:
    mapping, sequence, offset = _guess_indent(text)
    yaml = YAML(typ="rt")
    yaml.preserve_quotes = True
    yaml.width = 4096
    yaml.indent(mapping=mapping, sequence=sequence, offset=offset)
    return yaml


def _dump(yaml: YAML, data: Any) -> str:
    out = io.StringIO()
    yaml.dump(data, out)
    return out.getvalue()


def _same_scalar(node: Any, new: Any) -> bool:
    if isinstance(node, (dict, list)) or isinstance(new, (dict, list)):
        return False
    if isinstance(node, bool) != isinstance(new, bool) or isinstance(node, str) != isinstance(new, str):
        return False
    return node == new


def _merge(node: Any, new: Any) -> Any:
    """`node` (a round-trip tree) updated in place to equal `new`; returns the node to keep."""
    if isinstance(node, CommentedMap) and isinstance(new, dict):
        for key in [k for k in node if k not in new]:
            del node[key]
        for key, value in new.items():
            node[key] = _merge(node[key], value) if key in node else value
        return node
    if isinstance(node, CommentedSeq) and isinstance(new, list):
        return _merge_seq(node, new)
    if _same_scalar(node, new):
        return node
    if isinstance(node, str) and isinstance(new, str) and type(node) is not str:
        return type(node)(new)  # keep the quoting style of the value it replaces
    return new


def _merge_seq(seq: CommentedSeq, new: list) -> CommentedSeq:
    if not (all(token_of(i) for i in new) and all(token_of(i) for i in seq)):
        for index, value in enumerate(new):
            if index < len(seq):
                seq[index] = _merge(seq[index], value)
            else:
                seq.append(value)
        del seq[len(new):]
        return seq
    pairs = pair_entries(list(seq), new)  # token entries: matched by token, renamed by position
    merged = CommentedSeq()
    merged.ca.comment = seq.ca.comment
    if seq.fa.flow_style():
        merged.fa.set_flow_style()
    for position, value in enumerate(new):
        if position not in pairs:
            merged.append(value)
            continue
        index = pairs[position]
        merged.append(_merge(seq[index], value))
        if index in seq.ca.items:
            merged.ca.items[position] = seq.ca.items[index]
    return merged


def _plain(data: Any) -> Any:
    return json.loads(json.dumps(data))


def render(data: Any, fmt: str, base_text: str | None = None) -> str:
    """The file text for config `data` (plain JSON types), keeping `base_text`'s comments (YAML)."""
    if fmt == "json":
        if base_text is not None:
            try:
                if json.loads(base_text) == data:
                    return base_text
            except ValueError:
                pass
        return json.dumps(data, indent=2, ensure_ascii=False) + "\n"
    if base_text and base_text.strip():
        try:
            yaml = _yaml(base_text)
            tree = yaml.load(base_text)
            text = _dump(yaml, _merge(tree, data)) if tree is not None else None
            if text is not None and _parses_to(text, data):
                return text
            log.warning("could not keep the YAML file's layout for this save; writing it afresh")
        except YAMLError:
            pass
    return _dump(_yaml(), data)


def _parses_to(text: str, data: Any) -> bool:
    try:
        return _plain(parse_text(text, "<render>")) == _plain(data)
    except (ConfigError, TypeError, ValueError):
        return False


def masked_text(text: str, fmt: str) -> str:
    """`text` with every secret value masked (for the raw editor). YAML keeps its comments."""
    if fmt == "json":
        data = json.loads(text)
        slots = [(c, k) for c, k, _, _ in secret_slots(data) if isinstance(c.get(k), str) and c.get(k)]
        if not slots:
            return text
        for container, key in slots:
            container[key] = mask(container[key])
        return json.dumps(data, indent=2, ensure_ascii=False) + "\n"
    yaml = _yaml(text)
    tree = yaml.load(text)
    changed = False
    for container, key, _, _ in secret_slots(tree):
        value = container.get(key)
        if isinstance(value, str) and value and mask(value) != value:
            container[key] = type(value)(mask(value)) if type(value) is not str else mask(value)
            changed = True
    return _dump(yaml, tree) if changed else text


# -- writing ----------------------------------------------------------------------------------


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path: str | os.PathLike, text: str) -> None:
    """Replace the file at `path` with `text`: temp file in the same folder, fsync, `os.replace`.

    The new file keeps the old one's permission bits. Raises OSError (the old file is intact).
    """
    target = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f"{TEMP_PREFIX}{target.name}.", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.chmod(tmp, target.stat().st_mode & 0o7777)
        except FileNotFoundError:
            pass
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(target.parent)


def backup_path(path: str | os.PathLike) -> Path:
    """Where the previous file is kept: `PATH.bak` (e.g. `model_config.yaml.bak`)."""
    return Path(f"{path}.bak")


def backup(path: str | os.PathLike) -> None:
    """Copy the current file to `PATH.bak` (atomically); nothing when the file does not exist."""
    source = Path(path)
    if not source.exists():
        return
    fd, tmp = tempfile.mkstemp(prefix=f"{TEMP_PREFIX}{source.name}.bak.", dir=source.parent)
    os.close(fd)
    try:
        shutil.copy2(source, tmp)
        os.replace(tmp, backup_path(path))
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def is_own_temp(name: str) -> bool:
    """True for the temp files this module creates (the watcher ignores them)."""
    return name.startswith(TEMP_PREFIX)
