"""`python open-api.py`: the command line of CONTRACT.md §1."""

from __future__ import annotations

import argparse
import logging
import os
import sys

from gateway.config import ConfigError, load_config

DEFAULT_CONFIG = "configs/model_config.yaml"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="open-api.py",
        description="An OpenAI-compatible gateway in front of many LLM providers.",
    )
    parser.add_argument(
        "--config",
        default=os.environ.get("GATEWAY_CONFIG") or DEFAULT_CONFIG,
        help="config file, YAML or JSON by extension (default: $GATEWAY_CONFIG, else %(default)s)",
    )
    parser.add_argument("--host", default="0.0.0.0", help="address to listen on (default: %(default)s)")
    parser.add_argument("--port", type=int, default=8090, help="port to listen on (default: %(default)s)")
    parser.add_argument("--workers", type=int, default=1, help="worker processes (default: %(default)s)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Validate the config (exit 2 with one line on failure), then serve with uvicorn."""
    args = parse_args(argv)
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"config error: {exc.line()}", file=sys.stderr)
        return 2
    limited = [e.name for e in config.entries.values() if e.limits is not None and e.limits.counters]
    if args.workers > 1 and limited and not config.settings.redis_url:
        # CONTRACT.md §8: each worker would count rpm/tpm/parallel/budgets alone.
        print(f"config error: {args.config}: --workers {args.workers} with per-token limits (entry "
              f"{limited[0]!r}{' and others' if len(limited) > 1 else ''}) needs settings.redis_url: "
              "without it each worker would count the limits alone; use one worker or set redis_url",
              file=sys.stderr)
        return 2
    level = config.settings.log_level.upper()
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    os.environ["GATEWAY_CONFIG"] = os.path.abspath(args.config)
    if config.settings.admin_token is None:
        # One generated admin token for every worker, announced once (CONTRACT.md §5).
        from gateway.admin.security import announce_generated_token, generate_token

        os.environ["GATEWAY_ADMIN_TOKEN"] = generate_token()
        announce_generated_token(os.environ["GATEWAY_ADMIN_TOKEN"])

    if args.workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # §7: one /metrics view over all workers (prometheus_client's multiprocess mode); set
        # before the workers start, in a fresh directory.
        import tempfile

        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="gateway-metrics-")

    import uvicorn

    from gateway import server

    server.raise_fd_limit()
    limits = server.limits_from_settings(config.settings)
    server.export(limits)
    server.GuardedHttpToolsProtocol.limits = limits
    trusted = config.settings.trusted_proxies
    uvicorn.run(
        "gateway.app:create_app",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        log_level=config.settings.log_level.lower(),
        access_log=config.settings.log_level.lower() == "debug",
        # README "Limits and hardening": our connection limits on uvicorn's httptools parser.
        http="gateway.server:GuardedHttpToolsProtocol",
        timeout_keep_alive=config.settings.keep_alive_timeout,
        # X-Forwarded-For / -Proto are believed only from settings.trusted_proxies.
        proxy_headers=bool(trusted),
        forwarded_allow_ips=",".join(trusted) if trusted else None,
        server_header=False,
    )
    return 0
