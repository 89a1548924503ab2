#!/usr/bin/env python3
"""Profile the gateway's hot path under benchmark load with py-spy.

Starts the fake upstream (core 1) and the gateway (core 0) exactly as bench/run.py does, puts
load on one token, samples the gateway process with `py-spy record`, and prints the functions
that cost most: by own time (self) and including callees (inclusive), in % of samples.

    python bench/profile.py                       # non-stream, wrk at 64 connections, proxy token
    python bench/profile.py --token claude        # through the claude adapter
    python bench/profile.py --token router        # through the 4-member round-robin router
    python bench/profile.py --streams 200         # 200 concurrent streams x 20 chunks, repeated
    python bench/profile.py --after-burst 1000    # same, after a burst of 1000 streams filled the pool
    python bench/profile.py --speedscope out.json # also save a profile for speedscope.app

Needs py-spy (`pip install py-spy`; installed on first use) and, for non-stream load, wrk.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import run


def top(raw: Path, limit: int) -> str:
    """Self and inclusive top functions from py-spy's raw (collapsed stacks) output."""
    own, incl, total = collections.Counter(), collections.Counter(), 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = stack.split(";")
        own[frames[-1]] += n
        for frame in set(frames):
            incl[frame] += n
    out = [f"{total} samples", "", "self %  function (file:line)"]
    out += [f"{100 * n / total:6.1f}  {f}" for f, n in own.most_common(limit)]
    out += ["", "incl %  function (file:line)"]
    out += [f"{100 * n / total:6.1f}  {f}" for f, n in incl.most_common(limit * 2)]
    return "\n".join(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=15, help="sampling time (default %(default)s)")
    parser.add_argument("--token", default="gateway", choices=("gateway", "claude", "router"), help="which token to load")
    parser.add_argument("--connections", type=int, default=64, help="wrk connections (default %(default)s)")
    parser.add_argument("--streams", type=int, default=0, help="profile N concurrent streams (repeated) instead of wrk")
    parser.add_argument("--after-burst", type=int, default=0, metavar="N",
                        help="first open N concurrent streams (fills the gateway's upstream pool, as a burst would)")
    parser.add_argument("--rate", type=int, default=200, help="py-spy samples per second (default %(default)s)")
    parser.add_argument("--limit", type=int, default=25, help="rows per table (default %(default)s)")
    parser.add_argument("--speedscope", help="also write a speedscope profile here")
    args = parser.parse_args()

    if not shutil.which("py-spy"):
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "py-spy"], check=True)
    wrk = run.ensure_wrk() if not args.streams else None
    targets = ["direct", "gateway"] + ([args.token] if args.token != "gateway" else [])
    plan = run.Plan(rounds=1, ns_seconds=args.seconds, lat_seconds=1, leak_total=0, leak_seconds=1, targets=targets, scenarios={"ns"})
    types = run.registered_types()
    if args.token != "gateway" and args.token not in types:
        print(f"adapter type {args.token!r} is not in this checkout", file=sys.stderr)
        return 2
    servers, ports = run.start_servers(plan, types, None)
    raw = run.OUT / "profile.raw"
    try:
        gateway = servers["gateway"]
        ep = run.endpoint(args.token, "s200" if args.streams else "ns", ports)
        stop = threading.Event()

        def load() -> None:
            deadline = time.monotonic() + args.seconds + 10
            if args.streams:
                from stream_client import build_request, run_streams

                request = build_request(run.HOST, ep.port, ep.path, ep.headers(), ep.body(True))
                while not stop.is_set() and time.monotonic() < deadline:
                    asyncio.run(run_streams(args.streams, run.HOST, ep.port, request, 60))
            else:
                run.run_wrk(wrk, ep, args.connections, args.seconds + 4, plan.load_cpus)

        if wrk:  # warm-up: pooled connections, lazy imports
            run.run_wrk(wrk, ep, args.connections, 2, plan.load_cpus)
        if args.after_burst:
            burst = run.endpoint(args.token, "s200", ports)
            run.run_stream_scenario(args.after_burst, burst, None, 120)
        thread = threading.Thread(target=load, daemon=True)
        thread.start()
        time.sleep(2)
        cmd = ["py-spy", "record", "-p", str(gateway.proc.pid), "-r", str(args.rate), "--nonblocking"]
        seconds = int(args.seconds) - (5 if args.speedscope else 0)
        subprocess.run([*cmd, "-d", str(max(1, seconds)), "-f", "raw", "-o", str(raw)], check=True, capture_output=True)
        if args.speedscope:
            subprocess.run([*cmd, "-d", "5", "-f", "speedscope", "-o", args.speedscope], check=True, capture_output=True)
        stop.set()
        thread.join(args.seconds + 30)
    finally:
        for server in servers.values():
            server.stop()
    print(top(raw, args.limit))
    return 0


if __name__ == "__main__":
    sys.exit(main())
