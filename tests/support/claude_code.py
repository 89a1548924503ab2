"""Claude Code (npm `@anthropic-ai/claude-code`) for the tests, installed from the npm registry
into a cache directory on first use, so the suite works on a fresh machine.

`CLAUDE_CODE_VERSION` pins the version (default below); `GATEWAY_TEST_CACHE` moves the cache
(default `~/.cache/openai-style-api`). `offline_env` is the environment that keeps Claude Code
off the internet: its non-essential traffic, telemetry, error reporting and auto-updates are
off, and any connection other than to loopback goes to a dead proxy.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

VERSION = os.environ.get("CLAUDE_CODE_VERSION", "2.1.197")


def install() -> Path:
    """The path of the `claude` executable, installing it first when needed."""
    cache = Path(os.environ.get("GATEWAY_TEST_CACHE") or Path.home() / ".cache" / "openai-style-api")
    root = cache / f"claude-code-{VERSION}"
    binary = root / "node_modules" / ".bin" / "claude"
    if not binary.exists():
        npm = shutil.which("npm")
        if npm is None:
            raise RuntimeError("npm is needed to install Claude Code for this test (apt-get install npm)")
        root.mkdir(parents=True, exist_ok=True)
        subprocess.run([npm, "install", "--prefix", str(root), "--no-audit", "--no-fund", "--loglevel=error",
                        f"@anthropic-ai/claude-code@{VERSION}"], check=True, timeout=900)
    package = root / "node_modules" / "@anthropic-ai" / "claude-code"
    if binary.resolve().stat().st_size < 1 << 20:  # still the placeholder: npm skipped the postinstall script
        subprocess.run(["node", "install.cjs"], cwd=package, check=True, timeout=300)
    return binary


def offline_env(home: Path, base_url: str, token: str) -> dict[str, str]:
    """The whole environment for one `claude` run against the gateway at `base_url`."""
    dead_proxy = "http://127.0.0.1:9"
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "ANTHROPIC_BASE_URL": base_url,
        "ANTHROPIC_AUTH_TOKEN": token,
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "DISABLE_TELEMETRY": "1",
        "DISABLE_ERROR_REPORTING": "1",
        "DISABLE_AUTOUPDATER": "1",
        "HTTPS_PROXY": dead_proxy,
        "HTTP_PROXY": dead_proxy,
        "NO_PROXY": "127.0.0.1,localhost",
    }
