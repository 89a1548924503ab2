"""Reload the config when its file is changed on disk by someone else (an editor, a deploy).

`watch(manager, stop)` watches the config file's folder (not recursively, so `.history/` is not
watched; atomic replaces by editors change the file's inode, so the folder is what to watch) with
`watchfiles.awatch`, and for each batch of changes to the config file calls
`ConfigManager.reload_from_disk`, which compares the text with the running one: the gateway's
own saves are recognised and not applied twice; a bad edit is logged and ignored.

The file is also re-read every `RECHECK_SECONDS` while nothing happens (a cheap comparison), so
a change made before the watch was registered, or on a filesystem without change
notifications (some network and container mounts), is still picked up.
"""

from __future__ import annotations

import asyncio
import logging
import os

from watchfiles import awatch

from gateway.admin.manager import ConfigManager

log = logging.getLogger("gateway.admin")

RECHECK_SECONDS = 1.0

# watchfiles logs every batch of changes at INFO; the reload itself is logged here instead.
logging.getLogger("watchfiles.main").setLevel(logging.WARNING)


async def watch(manager: ConfigManager, stop: asyncio.Event) -> None:
    """Run until `stop` is set. Never raises for a bad file; logs unexpected errors and goes on."""
    if not manager.path:
        return
    target = os.path.abspath(manager.path)
    folder = os.path.dirname(target)

    def is_config(_change, path: str) -> bool:
        return os.path.abspath(path) == target

    manager.watching = True
    try:
        # A change made before the watcher started (between load and start-up) is caught here.
        await manager.reload_from_disk()
        changes = awatch(
            folder,
            watch_filter=is_config,
            stop_event=stop,
            recursive=False,
            debounce=400,
            step=50,
            rust_timeout=int(RECHECK_SECONDS * 1000),
            yield_on_timeout=True,
        )
        async for _batch in changes:
            try:
                await manager.reload_from_disk()
            except Exception:
                log.exception("reloading %s after a change on disk failed", target)
    except FileNotFoundError:
        log.warning("cannot watch %s: the folder does not exist", folder)
    except Exception:
        log.exception("the config file watcher stopped; changes on disk are no longer applied")
    finally:
        manager.watching = False
