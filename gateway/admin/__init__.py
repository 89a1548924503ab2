"""The config page (CONTRACT.md §5): `GET /`, its static files, and the admin JSON API.

`mount(app)` is called by `gateway.app.create_app`. It adds the page and API routes
(`gateway.admin.api`), serves `static/` at `/static`, makes sure an admin token exists
(generating and logging one when none is configured), and runs the file watcher
(`gateway.admin.watcher`) for as long as the app's lifespan.

Package layout: `security` (admin token, session cookie, CSRF, login backoff), `masking`
(secret masking and restoring), `files` (YAML round-trip rendering, atomic write, backup),
`history` (versions and change summaries), `manager` (validate/save/apply/rollback/reload),
`forms` (form descriptions from the adapters' config models), `watcher`, `api` (routes),
`usage` (the §6 usage API),
`templates/` (the page).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from contextlib import asynccontextmanager
from pathlib import Path

from starlette.applications import Starlette
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles

from gateway.admin import api, usage
from gateway.admin.manager import ConfigManager
from gateway.admin.security import AdminKeys, LoginLimiter
from gateway.admin.watcher import watch

log = logging.getLogger("gateway.admin")

STATIC_DIR = Path(__file__).resolve().parents[2] / "static"


class AdminState:
    """What the admin routes share (`app.state.admin`): `manager`, `keys`, `limiter`."""

    def __init__(self, app: Starlette) -> None:
        gateway = app.state.gateway
        self.manager = ConfigManager(gateway)
        revocations = None
        if gateway.path:
            config = Path(gateway.path).resolve()
            revocations = config.parent / ".history" / config.name / "revoked-sessions"
        self.keys = AdminKeys(lambda: gateway.runtime.settings.admin_token, revocations)
        self.limiter = LoginLimiter()


def mount(app: Starlette) -> None:
    """Add the config page, its static files and admin API to `app`, and the file watcher to its lifespan."""
    state = AdminState(app)
    app.state.admin = state
    state.keys.token()  # generate and announce now when none is configured, not at first use
    app.router.routes.extend(api.routes())
    app.router.routes.extend(usage.routes())  # §6 usage API
    app.router.routes.append(Mount("/static", app=StaticFiles(directory=STATIC_DIR), name="static"))

    inner = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(application):
        async with inner(application) as maybe_state:
            stop = asyncio.Event()
            task = asyncio.create_task(watch(state.manager, stop), name="gateway-config-watcher")
            try:
                yield maybe_state
            finally:
                stop.set()
                try:
                    await asyncio.wait_for(task, timeout=5)
                except (TimeoutError, asyncio.CancelledError):
                    task.cancel()
                    with contextlib.suppress(BaseException):
                        await task

    app.router.lifespan_context = lifespan


__all__ = ["AdminState", "mount"]
