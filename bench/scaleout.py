#!/usr/bin/env python3
"""The scale-out benchmark (CONTRACT.md §8): limits counted in memory vs in Redis, 1 vs 2 workers.

    python bench/scaleout.py               # 3 rounds of 10 s wrk runs, about 3 minutes
    python bench/scaleout.py --rounds 1 --seconds 3

Targets, each a `proxy` token with `rpm_limit`, `tpm_limit` and `max_parallel_requests` set
(so every request is admitted and settled) in front of bench/fake_upstream.py:
  memory    1 worker, counters in memory (no redis_url)
  redis     1 worker, counters in a local redis-server (settings.redis_url)
  redis-w2  `--workers 2`, counters in the same Redis
and `nolimit`, 1 worker with no limits at all (what limits cost on their own).

Pinning as bench/run.py: single-worker servers on core 0, `redis-w2` on cores 0,1; the fake
upstream, redis-server and wrk on core 1. Each round runs every target in turn, each freshly
started and warmed up; ratios are taken within a round, then the median over rounds. Checks
(issue 13): redis-w2 ≥ 1.7× redis (non-stream throughput), redis ≥ 0.85× memory.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime

sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parent))

from run import HOST, OUT, UPSTREAM_KEY, Endpoint, Server, ensure_wrk, free_port, run_wrk  # noqa: E402

BENCH = OUT.parent
TARGETS = ("nolimit", "memory", "redis", "redis-w2")
LIMITS = {"rpm_limit": 100_000_000, "tpm_limit": 10_000_000_000, "max_parallel_requests": 100_000}


def config(upstream: int, redis_url: str | None, limited: bool) -> dict:
    entry = {"token": "gw-ns", "name": "bench", "type": "proxy",
             "config": {"api_base": f"http://{HOST}:{upstream}/v1", "api_key": UPSTREAM_KEY}}
    if limited:
        entry.update(LIMITS)
    settings = {"log_level": "warning", "access_log": False, "request_timeout": 120}
    if redis_url:
        settings["redis_url"] = redis_url
    return {"settings": settings, "tokens": [entry]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--gateway-cpus", default="0")
    parser.add_argument("--load-cpus", default="1")
    args = parser.parse_args()
    wrk = ensure_wrk()
    redis_bin = shutil.which("redis-server")
    if wrk is None or redis_bin is None:
        print("needs wrk and redis-server (apt-get install -y wrk redis-server)", file=sys.stderr)
        return 2
    OUT.mkdir(exist_ok=True)
    py = sys.executable
    ports = {name: free_port() for name in ("upstream", "redis-server", *TARGETS)}
    upstream = Server("upstream", [py, str(BENCH / "fake_upstream.py"), "--port", str(ports["upstream"])],
                      args.load_cpus, ports["upstream"], "/healthz")
    redis = subprocess.Popen(["taskset", "-c", args.load_cpus, redis_bin, "--port", str(ports["redis-server"]), "--bind", HOST,
                              "--save", "", "--appendonly", "no"], stdout=subprocess.DEVNULL)
    redis_url = f"redis://{HOST}:{ports['redis-server']}/0"
    servers: dict[str, Server] = {}
    rows: list[dict] = []
    try:
        upstream.wait_ready(30)
        for target in TARGETS:
            path = OUT / f"scaleout-{target}.json"
            path.write_text(json.dumps(config(ports["upstream"], None if target in ("nolimit", "memory") else redis_url, target != "nolimit")))
            cmd = [py, "open-api.py", "--config", str(path), "--host", HOST, "--port", str(ports[target])]
            cpus = args.gateway_cpus
            if target == "redis-w2":
                cmd += ["--workers", "2"]
                cpus = f"{args.gateway_cpus},{args.load_cpus}"
            servers[target] = Server(f"scaleout-{target}", cmd, cpus, ports[target], "/healthz")
            servers[target].wait_ready(60)
        for round_no in range(args.rounds):
            order = TARGETS if round_no % 2 == 0 else tuple(reversed(TARGETS))
            for target in order:
                server = servers[target]
                server.restart(60)
                ep = Endpoint(ports[target], "/v1/chat/completions", "gw-ns")
                run_wrk(wrk, ep, 64, 2, args.load_cpus)  # warm-up
                result = run_wrk(wrk, ep, 64, args.seconds, args.load_cpus)
                rows.append({"round": round_no, "target": target, **result})
                print(f"round {round_no} {target:9} {result['rps'] or 0:8.0f} req/s  non2xx {result['non2xx']}", flush=True)
    finally:
        for server in servers.values():
            server.stop()
        upstream.stop()
        redis.terminate()
        redis.wait(10)

    def rps(target: str, round_no: int) -> float:
        return next(r["rps"] or 0.0 for r in rows if r["target"] == target and r["round"] == round_no)

    def ratio(a: str, b: str) -> list[float]:
        return [rps(a, i) / rps(b, i) for i in range(args.rounds) if rps(b, i)]

    def cell(values: list[float]) -> str:
        return f"{statistics.median(values):.2f} [{min(values):.2f}–{max(values):.2f}]" if values else "n/a"

    checks = [
        ("redis-w2 / redis (non-stream req/s)", ratio("redis-w2", "redis"), 1.7),
        ("redis / memory (non-stream req/s)", ratio("redis", "memory"), 0.85),
        ("memory / nolimit (what limits cost)", ratio("memory", "nolimit"), None),
    ]
    lines = [f"# Scale-out benchmark, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC", "",
             f"{args.rounds} round(s) of {args.seconds:.0f} s wrk runs at 64 connections; median [min–max] over rounds.", "",
             "| target | req/s |", "|---|---|"]
    for target in TARGETS:
        lines.append(f"| {target} | {cell([r['rps'] or 0.0 for r in rows if r['target'] == target])} |")
    lines += ["", "| check | ratio | goal | result |", "|---|---|---|---|"]
    for name, values, goal in checks:
        verdict = "—" if goal is None else ("PASS" if values and statistics.median(values) >= goal else "FAIL")
        lines.append(f"| {name} | {cell(values)} | {'≥ ' + str(goal) if goal else 'info'} | {verdict} |")
    text = "\n".join(lines) + "\n"
    print(text)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    (OUT / f"scaleout-{stamp}.md").write_text(text)
    (OUT / f"scaleout-{stamp}.json").write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
