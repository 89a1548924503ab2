#!/usr/bin/env python3
"""The gateway benchmark (issue 6): one command, alternating rounds, medians and ratios.

    python bench/run.py            # full run, about 12-15 minutes
    python bench/run.py --quick    # about 4-5 minutes
    python bench/run.py --only gateway,lean --scenarios ns,lat

Targets, all in front of the same fake upstream (bench/fake_upstream.py):
  direct   the fake upstream itself (the floor)
  gateway  this gateway, `python open-api.py --config bench/out/gateway.json`, 1 worker
  lean     bench/lean_forwarder.py, a ~75-line aiohttp token -> upstream forwarder
  litellm  LiteLLM's proxy, 1 worker, in its own virtualenv (bench/.venv-litellm)
  claude   the gateway through a `claude` token (OpenAI <-> Anthropic translation)
  router   the gateway through a 4-member round-robin `router` token
  limited  the gateway through a `proxy` token with every limit of CONTRACT.md §6 set (rpm,
           tpm, parallel, USD and token budgets; never reached), usage recorded, /metrics on
  w2       the gateway started with --workers 2 (non-stream throughput only)
  responses  the gateway's `POST /v1/responses` (stored, non-streamed) through the same proxy
           token as `gateway`: translation + one SQLite write on top of the chat completion

Every server under test is pinned to core 0 (`taskset -c 0`; w2 gets cores 0,1); the fake
upstream, wrk and this script's own asyncio load client run on core 1. All traffic is on
127.0.0.1. Each round runs every scenario against every target in turn, so drift on a shared
machine hits all of them alike; ratios are computed within a round, then the median is taken.
Each server is restarted (and warmed up for 2 s) at the start of its turn, so every turn starts
from the same state.

Scenarios:
  ns     non-streamed req/s at 64 connections (wrk), and the server's CPU ms per request; run
         again at the end of the turn ("after the stream bursts") to expose state left by them
  lat    latency p50/p99 at 8 connections (wrk --latency); "added" = target - direct
  s200   200 concurrent streams x 20 chunks (10 ms apart): TTFT p50; "added" = target - direct
  s1000  1000 concurrent streams x 50 chunks every 100 ms: peak RSS (sum of the process tree)
         and total wall time vs direct
  leak   (gateway) RSS after N mixed requests vs after the first N/10 (after the rounds)

Results: a Markdown report on stdout and in bench/out/results-<time>.md, raw numbers in .json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import resource
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
OUT = BENCH / "out"
LITELLM_VENV = BENCH / ".venv-litellm"
LITELLM_SPEC = ("litellm[proxy]==1.106.*", "litellm[proxy]")
HOST = "127.0.0.1"
UPSTREAM_KEY = "upstream-key"
LITELLM_KEY = "sk-bench-" + secrets.token_hex(24)  # LiteLLM 1.106 refuses to start without a strong master key
ALL_TARGETS = ("direct", "gateway", "lean", "litellm", "claude", "router", "limited", "w2", "responses")
ALL_SCENARIOS = ("ns", "lat", "s200", "s1000", "leak")
# scenario profiles: the fake upstream's path knob (chunks, ms between chunks)
PROFILES = {"ns": "", "s200": "/c20i10", "s1000": "/c50i100", "fast": "/c20i0"}
# which scenarios each target runs
TARGET_SCENARIOS = {
    "direct": {"ns", "lat", "s200", "s1000"},
    "gateway": {"ns", "lat", "s200", "s1000"},
    "lean": {"ns", "lat", "s200", "s1000"},
    "litellm": {"ns", "lat", "s200", "s1000"},
    "claude": {"ns", "lat", "s200"},
    "router": {"ns", "lat", "s200"},
    "limited": {"ns", "lat", "s200"},
    "w2": {"ns"},
    "responses": {"ns", "lat"},
}


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


# -- setup ----------------------------------------------------------------------------------


def ensure_python_deps() -> None:
    """aiohttp (the lean forwarder), httptools/uvloop (clients); installs bench/requirements.txt."""
    try:
        import aiohttp  # noqa: F401
        import httptools  # noqa: F401
    except ImportError:
        log("installing bench/requirements.txt into this Python")
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "-r", str(BENCH / "requirements.txt")], check=True)


def ensure_wrk() -> str | None:
    """The wrk binary; installed with apt-get (Debian package `wrk`) when missing and root."""
    path = shutil.which("wrk")
    if path:
        return path
    if os.geteuid() == 0 and shutil.which("apt-get"):
        log("installing wrk with apt-get")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        lock = ["-o", "DPkg::Lock::Timeout=300"]
        subprocess.run(["apt-get", *lock, "update", "-qq"], env=env, check=False)
        subprocess.run(["apt-get", *lock, "install", "-y", "-qq", "wrk"], env=env, check=False)
    return shutil.which("wrk")


def ensure_litellm() -> Path | None:
    """LiteLLM's proxy in its own virtualenv (bench/.venv-litellm); None when it cannot be installed."""
    exe = LITELLM_VENV / "bin" / "litellm"
    if exe.exists():
        return exe
    log(f"installing LiteLLM into {LITELLM_VENV} (a few minutes)")
    if not (LITELLM_VENV / "bin" / "python").exists():
        subprocess.run([sys.executable, "-m", "venv", str(LITELLM_VENV)], check=True)
    pip = [str(LITELLM_VENV / "bin" / "python"), "-m", "pip", "install", "-q"]
    for spec in LITELLM_SPEC:
        if subprocess.run([*pip, spec], check=False).returncode == 0 and exe.exists():
            return exe
    return None


def litellm_version() -> str:
    py = LITELLM_VENV / "bin" / "python"
    cmd = [str(py), "-c", "import importlib.metadata as m; print(m.version('litellm'))"]
    return subprocess.run(cmd, capture_output=True, text=True, check=False).stdout.strip() or "?"


def registered_types() -> set[str]:
    """Adapter types this checkout's gateway registers (claude/router may still be missing)."""
    code = "from gateway import registry; print(' '.join(registry.type_names()))"
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=False)
    return set(result.stdout.split())


def cpu_model() -> str:
    with open("/proc/cpuinfo") as fh:
        return next((ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name")), platform.processor())


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


# -- processes ------------------------------------------------------------------------------


def _children() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    ppid = int(fh.read().rpartition(")")[2].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            kids.setdefault(ppid, []).append(int(entry))
    return kids


class Server:
    """A server process under test (or the fake upstream), pinned with taskset."""

    def __init__(self, name: str, cmd: list[str], cpus: str, port: int, health: str, env: dict | None = None) -> None:
        self.name, self.cmd, self.cpus, self.port, self.health, self.env = name, cmd, cpus, port, health, env
        OUT.mkdir(exist_ok=True)
        self.log_path = OUT / f"{name}.log"
        self._log = open(self.log_path, "ab")  # noqa: SIM115 (closed in stop())
        self.proc = subprocess.Popen(
            ["taskset", "-c", cpus, *cmd],
            cwd=ROOT,
            env={**os.environ, **(env or {})},
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        url = f"http://{HOST}:{self.port}{self.health}"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}; see {self.log_path}")
            try:
                with urllib.request.urlopen(url, timeout=2) as response:
                    if response.status < 500:
                        return
            except OSError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"{self.name} not ready within {timeout:.0f}s; see {self.log_path}")

    def pids(self) -> list[int]:
        """The process and all its descendants (uvicorn workers)."""
        kids = _children()
        out, todo = [], [self.proc.pid]
        while todo:
            pid = todo.pop()
            out.append(pid)
            todo.extend(kids.get(pid, []))
        return out

    def cpu_seconds(self) -> float:
        """utime+stime of the process tree, seconds."""
        ticks = os.sysconf("SC_CLK_TCK")
        total = 0
        for pid in self.pids():
            try:
                with open(f"/proc/{pid}/stat") as fh:
                    fields = fh.read().rpartition(")")[2].split()
                total += int(fields[11]) + int(fields[12])
            except (OSError, IndexError, ValueError):
                pass
        return total / ticks

    def rss_mib(self) -> float:
        """VmRSS summed over the process tree, MiB."""
        total = 0
        for pid in self.pids():
            try:
                with open(f"/proc/{pid}/status") as fh:
                    for line in fh:
                        if line.startswith("VmRSS:"):
                            total += int(line.split()[1])
                            break
            except OSError:
                pass
        return total / 1024

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(10)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.proc.wait(5)
        self._log.close()

    def restart(self, timeout: float) -> None:
        """A fresh process (same command, pinning and port): each target's turn starts from the
        same state, not from pools and heaps left by the previous scenario's burst."""
        self.stop()
        self.__init__(self.name, self.cmd, self.cpus, self.port, self.health, self.env)
        self.wait_ready(timeout)


# -- configs --------------------------------------------------------------------------------


def gateway_config(upstream: int, types: set[str]) -> dict:
    """Tokens per scenario profile (proxy), plus claude and router tokens when registered."""
    base = f"http://{HOST}:{upstream}"
    tokens = [
        {"token": f"gw-{p}", "type": "proxy", "config": {"api_base": f"{base}{knob}/v1", "api_key": UPSTREAM_KEY}}
        for p, knob in PROFILES.items()
    ]
    if "claude" in types:
        tokens += [
            {
                "token": f"claude-{p}",
                "type": "claude",
                "config": {"api_base": f"{base}{knob}", "api_key": UPSTREAM_KEY, "model": "claude-bench", "max_tokens": 256},
            }
            for p, knob in PROFILES.items()
        ]
    if "router" in types:
        for p, knob in PROFILES.items():
            members = [f"member-{p}-{i}" for i in range(4)]
            tokens += [
                {"token": m, "type": "proxy", "internal": True, "config": {"api_base": f"{base}{knob}/v1", "api_key": UPSTREAM_KEY}}
                for m in members
            ]
            tokens.append({"token": f"router-{p}", "type": "router", "config": {"router_strategy": "round-robin", "token_pool": members}})
    # every §6 limit set, high enough never to refuse: the cost of admission and settlement
    limits = {"rpm_limit": 10**9, "tpm_limit": 10**12, "max_parallel_requests": 10**6, "max_budget": 10.0**9,
              "token_budget": 10**15, "budget_duration": "1mo"}
    tokens += [
        {"token": f"limited-{p}", "type": "proxy", "config": {"api_base": f"{base}{knob}/v1", "api_key": UPSTREAM_KEY}, **limits}
        for p, knob in PROFILES.items()
    ]
    return {"settings": {"log_level": "warning", "request_timeout": 120, "stream_idle_timeout": 60}, "tokens": tokens}


def litellm_config(upstream: int) -> str:
    lines = ["model_list:"]
    for p, knob in PROFILES.items():
        lines += [
            f"  - model_name: bench-{p}",
            "    litellm_params:",
            "      model: openai/bench-model",
            f"      api_base: http://{HOST}:{upstream}{knob}/v1",
            f"      api_key: {UPSTREAM_KEY}",
        ]
    lines += ["litellm_settings:", "  drop_params: true", "  telemetry: false", "  set_verbose: false"]
    lines += ["general_settings:", f"  master_key: {LITELLM_KEY}"]
    return "\n".join(lines) + "\n"


@dataclass
class Endpoint:
    """Where a target's request for one profile goes: port, path, auth, model."""

    port: int
    path: str
    token: str
    model: str = "bench-model"
    api: str = "chat"  # or "responses": the same request as a Responses API body

    def body(self, stream: bool) -> bytes:
        data = {"model": self.model, "messages": [{"role": "user", "content": "Say hello to the benchmark."}]}
        if self.api == "responses":
            data = {"model": self.model, "input": "Say hello to the benchmark."}
        if stream:
            data["stream"] = True
        return json.dumps(data, separators=(",", ":")).encode()

    def headers(self) -> dict[str, str]:
        return {"authorization": f"Bearer {self.token}"}


def endpoint(target: str, profile: str, ports: dict[str, int]) -> Endpoint:
    knob = PROFILES[profile]
    if target == "direct":
        return Endpoint(ports["upstream"], f"{knob}/v1/chat/completions", UPSTREAM_KEY)
    if target == "lean":
        return Endpoint(ports["lean"], "/v1/chat/completions", f"lean-{profile}")
    if target == "litellm":
        return Endpoint(ports["litellm"], "/v1/chat/completions", LITELLM_KEY, f"bench-{profile}")
    if target in ("gateway", "w2"):
        return Endpoint(ports[target], "/v1/chat/completions", f"gw-{profile}")
    if target == "responses":
        return Endpoint(ports["gateway"], "/v1/responses", f"gw-{profile}", api="responses")
    return Endpoint(ports["gateway"], "/v1/chat/completions", f"{target}-{profile}")  # claude, router, limited


# -- load -----------------------------------------------------------------------------------

_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}


def _ms(text: str) -> float:
    match = re.match(r"([\d.]+)(us|ms|s|m)$", text)
    return float(match.group(1)) * _UNITS[match.group(2)]


def run_wrk(wrk: str, ep: Endpoint, connections: int, seconds: float, load_cpus: str) -> dict:
    """wrk against `ep` (non-streamed POST): req/s, requests, latency p50/p99 ms, errors."""
    script = OUT / f"wrk-{ep.port}-{ep.token}.lua"
    lua = ['wrk.method = "POST"', f"wrk.body = [[{ep.body(False).decode()}]]", 'wrk.headers["Content-Type"] = "application/json"']
    lua += [f'wrk.headers["{k}"] = "{v}"' for k, v in ep.headers().items()]
    script.write_text("\n".join(lua) + "\n")
    cmd = ["taskset", "-c", load_cpus, wrk, "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--latency", "--timeout", "10s"]
    cmd += ["-s", str(script), f"http://{HOST}:{ep.port}{ep.path}"]
    text = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60, check=False).stdout
    result = {"rps": None, "requests": 0, "p50_ms": None, "p99_ms": None, "non2xx": 0, "socket_errors": 0}
    if m := re.search(r"Requests/sec:\s+([\d.]+)", text):
        result["rps"] = float(m.group(1))
    if m := re.search(r"(\d+) requests in", text):
        result["requests"] = int(m.group(1))
    for pct, key in (("50", "p50_ms"), ("99", "p99_ms")):
        if m := re.search(rf"^\s+{pct}%\s+(\S+)", text, re.MULTILINE):
            result[key] = _ms(m.group(1))
    if m := re.search(r"Non-2xx or 3xx responses: (\d+)", text):
        result["non2xx"] = int(m.group(1))
    if m := re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text):
        result["socket_errors"] = sum(int(x) for x in m.groups())
    if result["rps"] is None or not result["requests"]:  # nothing completed: no numbers, not zeros
        result.update(rps=None, p50_ms=None, p99_ms=None, raw=text[-500:])
    return result


async def _streams_with_rss(n: int, ep: Endpoint, server: Server | None, timeout: float) -> dict:
    from stream_client import build_request, run_streams, summarize

    raw = build_request(HOST, ep.port, ep.path, ep.headers(), ep.body(True))
    peak = server.rss_mib() if server else 0.0
    done = asyncio.Event()

    async def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, server.rss_mib())
            try:
                await asyncio.wait_for(done.wait(), 0.1)
            except TimeoutError:
                pass

    sampler = asyncio.create_task(sample()) if server else None
    results, wall = await run_streams(n, HOST, ep.port, raw, timeout)
    done.set()
    if sampler:
        await sampler
    return {**summarize(results), "wall_s": wall, "peak_rss_mib": peak if server else None}


def run_stream_scenario(n: int, ep: Endpoint, server: Server | None, timeout: float) -> dict:
    return asyncio.run(_streams_with_rss(n, ep, server, timeout))


# -- the run --------------------------------------------------------------------------------


@dataclass
class Plan:
    rounds: int
    ns_seconds: float
    lat_seconds: float
    leak_total: int
    leak_seconds: float
    targets: list[str]
    scenarios: set[str]
    gateway_cpus: str = "0"
    load_cpus: str = "1"
    notes: list[str] = field(default_factory=list)


def start_servers(plan: Plan, types: set[str], litellm_exe: Path | None) -> tuple[dict[str, Server], dict[str, int]]:
    OUT.mkdir(exist_ok=True)
    ports = {name: free_port() for name in ("upstream", "gateway", "lean", "litellm", "w2")}
    servers: dict[str, Server] = {}
    py = sys.executable
    servers["upstream"] = Server("upstream", [py, str(BENCH / "fake_upstream.py"), "--port", str(ports["upstream"])],
                                 plan.load_cpus, ports["upstream"], "/healthz")
    cfg_path = OUT / "gateway.json"
    cfg_path.write_text(json.dumps(gateway_config(ports["upstream"], types), indent=1))
    want = set(plan.targets)
    if want & {"gateway", "claude", "router", "limited", "responses"}:
        cmd = [py, "open-api.py", "--config", str(cfg_path), "--host", HOST, "--port", str(ports["gateway"])]
        servers["gateway"] = Server("gateway", cmd, plan.gateway_cpus, ports["gateway"], "/healthz")
    if "w2" in want:
        cpus = f"{plan.gateway_cpus},{plan.load_cpus}"
        servers["w2"] = Server("gateway-w2", [py, "open-api.py", "--config", str(cfg_path), "--host", HOST, "--port", str(ports["w2"]), "--workers", "2"],
                               cpus, ports["w2"], "/healthz")
    if "lean" in want:
        routes = OUT / "lean-routes.json"
        routes.write_text(json.dumps({f"lean-{p}": f"http://{HOST}:{ports['upstream']}{knob}/v1" for p, knob in PROFILES.items()}))
        servers["lean"] = Server("lean", [py, str(BENCH / "lean_forwarder.py"), "--routes", str(routes), "--port", str(ports["lean"])],
                                 plan.gateway_cpus, ports["lean"], "/healthz")
    if "litellm" in want and litellm_exe:
        cfg = OUT / "litellm.yaml"
        cfg.write_text(litellm_config(ports["upstream"]))
        env = {"LITELLM_TELEMETRY": "False", "LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_LOG": "ERROR",
               "NO_DOCS": "True", "DISABLE_ADMIN_UI": "True"}
        servers["litellm"] = Server("litellm", [str(litellm_exe), "--config", str(cfg), "--host", HOST, "--port", str(ports["litellm"]), "--num_workers", "1"],
                                    plan.gateway_cpus, ports["litellm"], "/health/liveliness", env)
    try:
        for name, server in servers.items():
            server.wait_ready(180 if name == "litellm" else 60)
    except BaseException:
        for server in servers.values():  # none left behind when one fails to start
            server.stop()
        raise
    return servers, ports


def server_for(target: str, servers: dict[str, Server]) -> Server | None:
    if target == "direct":
        return None
    return servers["gateway"] if target in ("claude", "router", "limited", "responses") else servers.get(target)


def _ns(wrk: str, ep: Endpoint, server: Server | None, plan: Plan) -> dict:
    """Non-stream throughput at 64 connections and the server's CPU ms per request."""
    cpu0 = server.cpu_seconds() if server else 0.0
    res = run_wrk(wrk, ep, 64, plan.ns_seconds, plan.load_cpus)
    cpu = (server.cpu_seconds() - cpu0) if server else None
    return {**res, "cpu_ms_per_req": cpu * 1000 / res["requests"] if server and res["requests"] else None}


def run_rounds(plan: Plan, wrk: str | None, servers: dict[str, Server], ports: dict[str, int]) -> list[dict]:
    """Every round: each scenario for each target in turn. Returns one dict per (round, target)."""
    rows = []
    targets = [t for t in plan.targets if t == "direct" or t in servers or t in ("claude", "router", "limited", "responses") and "gateway" in servers]
    for rnd in range(1, plan.rounds + 1):
        order = targets if rnd % 2 else list(reversed(targets))
        for target in order:
            server = server_for(target, servers)
            scen = TARGET_SCENARIOS[target] & plan.scenarios
            row = {"round": rnd, "target": target}
            if server is not None:
                server.restart(180 if target == "litellm" else 60)
            # warm-up: connections, lazy imports, first-request paths
            if wrk and "ns" in TARGET_SCENARIOS[target]:
                run_wrk(wrk, endpoint(target, "ns", ports), 64, 2, plan.load_cpus)
            if "s200" in TARGET_SCENARIOS[target]:
                run_stream_scenario(8, endpoint(target, "s200", ports), None, 60)
            if "ns" in scen and wrk:
                row["ns"] = _ns(wrk, endpoint(target, "ns", ports), server, plan)
            if "lat" in scen and wrk:
                row["lat"] = run_wrk(wrk, endpoint(target, "ns", ports), 8, plan.lat_seconds, plan.load_cpus)
            if "s200" in scen:
                row["s200"] = run_stream_scenario(200, endpoint(target, "s200", ports), server, 120)
            if "s1000" in scen:
                idle = server.rss_mib() if server else None
                row["s1000"] = {**run_stream_scenario(1000, endpoint(target, "s1000", ports), server, 180), "idle_rss_mib": idle}
            if "ns" in scen and wrk and scen & {"s200", "s1000"} and target != "direct":
                # the same non-stream load again, now that the stream bursts have run (pools, heaps)
                row["ns_after"] = _ns(wrk, endpoint(target, "ns", ports), server, plan)
            rows.append(row)
            log(f"round {rnd} {target}: " + summary_line(row))
            time.sleep(0.5)
    return rows


def summary_line(row: dict) -> str:
    parts = []
    if ns := row.get("ns"):
        parts.append(f"ns {ns['rps'] or 0:.0f} req/s" + (f" {ns['cpu_ms_per_req']:.2f} ms CPU/req" if ns.get("cpu_ms_per_req") else ""))
        if ns["non2xx"] or ns["socket_errors"]:
            parts.append(f"ERRORS non2xx={ns['non2xx']} socket={ns['socket_errors']}")
    if lat := row.get("lat"):
        parts.append(f"lat p50 {lat['p50_ms']} p99 {lat['p99_ms']} ms")
    if s := row.get("s200"):
        parts.append(f"s200 ttft p50 {s['ttft_p50_ms'] or 0:.1f} ms ok {s['ok']}/{s['ok'] + s['failed']}")
    if ns := row.get("ns_after"):
        parts.append(f"ns after bursts {ns['rps'] or 0:.0f} req/s" + (f" {ns['cpu_ms_per_req']:.2f} ms CPU/req" if ns.get("cpu_ms_per_req") else ""))
    if s := row.get("s1000"):
        parts.append(f"s1000 wall {s['wall_s']:.2f}s peak {s['peak_rss_mib'] or 0:.0f} MiB ok {s['ok']}/{s['ok'] + s['failed']}")
    return "; ".join(parts)


def run_leak(plan: Plan, server: Server, ports: dict[str, int], types: set[str]) -> dict:
    """N mixed requests through the gateway (non-stream, fast streams, router, claude), RSS after
    the first N/10 and after all N."""
    from stream_client import build_request, run_requests

    kinds = [("gateway", "ns", False), ("gateway", "fast", True)]
    if "router" in types:
        kinds += [("router", "ns", False), ("router", "fast", True)]
    if "claude" in types:
        kinds += [("claude", "ns", False), ("claude", "fast", True)]
    raws = []
    for target, profile, stream in kinds:
        ep = endpoint(target, profile, ports)
        raws.append(build_request(HOST, ep.port, ep.path, ep.headers(), ep.body(stream)))

    def make(i: int) -> bytes:
        return raws[i % len(raws)]

    first = max(1, plan.leak_total // 10)
    port = ports["gateway"]
    rss0 = server.rss_mib()
    a = asyncio.run(run_requests(first, 32, HOST, port, make, timeout=plan.leak_seconds))
    time.sleep(1.0)
    rss1 = server.rss_mib()
    b = asyncio.run(run_requests(plan.leak_total - first, 32, HOST, port, make, timeout=plan.leak_seconds))
    time.sleep(1.0)
    rss2 = server.rss_mib()
    return {
        "kinds": [f"{t}/{p}/{'stream' if s else 'json'}" for t, p, s in kinds],
        "requests": a["requests"] + b["requests"],
        "failed": a["non2xx"] + a["errors"] + b["non2xx"] + b["errors"],
        "rss_start_mib": rss0,
        "rss_after_first_mib": rss1,
        "rss_after_all_mib": rss2,
        "growth": rss2 / rss1 - 1 if rss1 else None,
        "seconds": a["seconds"] + b["seconds"],
        "first": a["requests"],
        "total": a["requests"] + b["requests"],
        "time_bound_hit": bool(a.get("timed_out") or b.get("timed_out")),
    }


# -- report ---------------------------------------------------------------------------------


def _vals(rows: list[dict], target: str, path: tuple[str, str]) -> list[float]:
    out = []
    for row in rows:
        if row["target"] == target and path[0] in row and row[path[0]].get(path[1]) is not None:
            out.append(row[path[0]][path[1]])
    return out


def _per_round(rows: list[dict], fn) -> list[float]:
    """fn(round_rows_by_target) for each round where it is defined."""
    out = []
    for rnd in sorted({r["round"] for r in rows}):
        by = {r["target"]: r for r in rows if r["round"] == rnd}
        try:
            value = fn(by)
        except (KeyError, TypeError, ZeroDivisionError):
            continue
        if value is not None:
            out.append(value)
    return out


def fmt(values: list[float], digits: int = 1, unit: str = "") -> str:
    if not values:
        return "—"
    med = statistics.median(values)
    if len(values) == 1:
        return f"{med:,.{digits}f}{unit}"
    return f"{med:,.{digits}f}{unit} [{min(values):,.{digits}f}–{max(values):,.{digits}f}]"


def report(plan: Plan, rows: list[dict], leak: dict | None, meta: dict) -> tuple[str, list[dict]]:
    targets = [t for t in ALL_TARGETS if any(r["target"] == t for r in rows)]
    lines = [
        "# Gateway benchmark results",
        "",
        (
            f"- date: {meta['date']}; machine: {meta['nproc']} cores, {meta['cpu']}; Python {meta['python']}; "
            f"LiteLLM {meta.get('litellm', 'not run')}"
        ),
        (
            f"- rounds: {plan.rounds}; non-stream {plan.ns_seconds:g}s at 64 connections, latency {plan.lat_seconds:g}s at 8; "
            f"servers on core {plan.gateway_cpus}, upstream and load on core {plan.load_cpus}"
        ),
        "- cells: median [min–max] over rounds; 'added' values and ratios are computed within each round, then the median",
        "",
    ]
    for note in plan.notes:
        lines.append(f"- note: {note}")
    lines += ["", "| metric | " + " | ".join(targets) + " |", "|---|" + "---|" * len(targets)]

    def row(label: str, cells: list[str]) -> None:
        lines.append(f"| {label} | " + " | ".join(cells) + " |")

    def added(scen: str, key: str):
        return lambda t: (lambda by: by[t][scen][key] - by["direct"][scen][key])

    row("non-stream req/s @64", [fmt(_vals(rows, t, ("ns", "rps")), 0) for t in targets])
    row("CPU per request (ms)", [fmt(_vals(rows, t, ("ns", "cpu_ms_per_req")), 3) for t in targets])
    row("non-stream req/s @64 after the stream bursts", [fmt(_vals(rows, t, ("ns_after", "rps")), 0) for t in targets])
    row("CPU per request after the bursts (ms)", [fmt(_vals(rows, t, ("ns_after", "cpu_ms_per_req")), 3) for t in targets])
    row("latency p50 @8 (ms)", [fmt(_vals(rows, t, ("lat", "p50_ms")), 2) for t in targets])
    row("latency p99 @8 (ms)", [fmt(_vals(rows, t, ("lat", "p99_ms")), 2) for t in targets])
    row("added latency p50 (ms)", ["—" if t == "direct" else fmt(_per_round(rows, added("lat", "p50_ms")(t)), 2) for t in targets])
    row("added latency p99 (ms)", ["—" if t == "direct" else fmt(_per_round(rows, added("lat", "p99_ms")(t)), 2) for t in targets])
    row("200 streams: TTFT p50 (ms)", [fmt(_vals(rows, t, ("s200", "ttft_p50_ms")), 1) for t in targets])
    row("200 streams: added TTFT p50 (ms)", ["—" if t == "direct" else fmt(_per_round(rows, added("s200", "ttft_p50_ms")(t)), 1) for t in targets])
    row("1000 streams: peak RSS (MiB)", [fmt(_vals(rows, t, ("s1000", "peak_rss_mib")), 0) for t in targets])
    row("1000 streams: idle RSS before (MiB)", [fmt(_vals(rows, t, ("s1000", "idle_rss_mib")), 0) for t in targets])
    row("1000 streams: total time (s)", [fmt(_vals(rows, t, ("s1000", "wall_s")), 2) for t in targets])
    row("1000 streams: TTFT p50 (ms)", [fmt(_vals(rows, t, ("s1000", "ttft_p50_ms")), 0) for t in targets])
    failures = []
    for t in targets:
        bad = sum((r.get(s) or {}).get("failed", 0) for r in rows if r["target"] == t for s in ("s200", "s1000"))
        bad += sum((r.get(s) or {}).get("non2xx", 0) + (r.get(s) or {}).get("socket_errors", 0) for r in rows if r["target"] == t for s in ("ns", "lat", "ns_after"))
        failures.append(str(bad))
    row("failed requests/streams (all rounds)", failures)

    # targets of issue 6
    def ratio(a: str, b: str, scen: str = "ns", key: str = "rps"):
        return lambda by: by[a][scen][key] / by[b][scen][key]

    checks = []

    def check(name: str, values: list[float], goal: str, ok) -> None:
        med = statistics.median(values) if values else None
        status = "n/a" if med is None else ("PASS" if ok(med) else "FAIL")
        checks.append({"target": name, "values": values, "median": med, "goal": goal, "status": status})

    check("gateway/lean non-stream throughput", _per_round(rows, ratio("gateway", "lean")), "≥ 0.8×", lambda v: v >= 0.8)
    check("gateway/LiteLLM non-stream throughput", _per_round(rows, ratio("gateway", "litellm")), "≥ 50×", lambda v: v >= 50)
    check("gateway added latency p50 @8 (ms)", _per_round(rows, added("lat", "p50_ms")("gateway")), "≤ 1 ms", lambda v: v <= 1)
    check("gateway added latency p99 @8 (ms)", _per_round(rows, added("lat", "p99_ms")("gateway")), "≤ 5 ms", lambda v: v <= 5)
    check(
        "200 streams: gateway added TTFT − lean added TTFT (ms)",
        _per_round(rows, lambda by: by["gateway"]["s200"]["ttft_p50_ms"] - by["lean"]["s200"]["ttft_p50_ms"]),
        "≤ 5 ms",
        lambda v: v <= 5,
    )
    check("1000 streams: gateway peak RSS (MiB)", _vals(rows, "gateway", ("s1000", "peak_rss_mib")), "≤ 100 MiB", lambda v: v <= 100)
    check("1000 streams: gateway total time / direct", _per_round(rows, ratio("gateway", "direct", "s1000", "wall_s")), "≤ 1.1×", lambda v: v <= 1.1)
    if leak:
        check(f"RSS growth {leak['first']:,} → {leak['total']:,} mixed requests", [leak["growth"] * 100] if leak["growth"] is not None else [], "≤ 10 %", lambda v: v <= 10)
    check("claude adapter / lean non-stream throughput", _per_round(rows, ratio("claude", "lean")), "≥ 0.6×", lambda v: v >= 0.6)
    check("router (4× round-robin) / gateway non-stream throughput", _per_round(rows, ratio("router", "gateway")), "(info)", lambda v: True)
    check("limited (every §6 limit) / gateway non-stream throughput", _per_round(rows, ratio("limited", "gateway")), "≥ 0.9×", lambda v: v >= 0.9)
    check("limited added latency p99 @8 (ms)", _per_round(rows, added("lat", "p99_ms")("limited")), "≤ 5 ms", lambda v: v <= 5)
    check(
        "200 streams: limited added TTFT − lean added TTFT (ms)",
        _per_round(rows, lambda by: by["limited"]["s200"]["ttft_p50_ms"] - by["lean"]["s200"]["ttft_p50_ms"]),
        "≤ 5 ms",
        lambda v: v <= 5,
    )
    check("--workers 2 / --workers 1 non-stream throughput", _per_round(rows, ratio("w2", "gateway")), "near 2× (see note)", lambda v: v >= 1.6)
    check(
        "stored Responses request − the same chat completion, latency p50 @8 (ms)",
        _per_round(rows, lambda by: by["responses"]["lat"]["p50_ms"] - by["gateway"]["lat"]["p50_ms"]),
        "≤ 1 ms",
        lambda v: v <= 1,
    )
    check("lean/LiteLLM non-stream throughput", _per_round(rows, ratio("lean", "litellm")), "(info)", lambda v: True)

    lines += ["", "| target (issue 6) | this run: median [min–max] | goal | status |", "|---|---|---|---|"]
    for c in checks:
        lines.append(f"| {c['target']} | {fmt(c['values'], 2)} | {c['goal']} | {c['status']} |")
    if leak:
        lines += [
            "",
            f"Leak check: {leak['requests']:,} requests ({', '.join(leak['kinds'])}) through the gateway in {leak['seconds']:.0f}s, "
            f"{leak['failed']} failed; RSS {leak['rss_start_mib']:.1f} MiB at start, {leak['rss_after_first_mib']:.1f} MiB after "
            f"{leak['first']:,}, {leak['rss_after_all_mib']:.1f} MiB after {leak['total']:,}"
            + (" (stopped by the time bound, --leak-seconds)." if leak["time_bound_hit"] else "."),
        ]
    if "w2" in targets:
        lines += [
            "",
            (
                "`--workers 2` note: on a 2-core machine the two workers share core 1 with the fake upstream and wrk, "
                "so this ratio understates scaling; on a machine with spare cores pin the upstream/load elsewhere."
            ),
        ]
    return "\n".join(lines) + "\n", checks


def main() -> int:
    parser = argparse.ArgumentParser(description="Benchmark the gateway against direct, a lean forwarder and LiteLLM.")
    parser.add_argument("--quick", action="store_true", help="short rounds (about 4-5 minutes in all)")
    parser.add_argument("--rounds", type=int, help="rounds (default 3)")
    parser.add_argument("--seconds", type=float, help="non-stream throughput duration per round (default 10, quick 3)")
    parser.add_argument("--lat-seconds", type=float, help="latency run duration per round (default 8, quick 3)")
    parser.add_argument("--leak-requests", type=int, help="mixed requests for the leak check (default 100000, quick 20000)")
    parser.add_argument("--leak-seconds", type=float, default=600, help="time bound of each leak phase (default %(default)s)")
    parser.add_argument("--only", help=f"comma-separated targets (default all: {','.join(ALL_TARGETS)}); direct is always added")
    parser.add_argument("--skip", default="", help="comma-separated targets to leave out")
    parser.add_argument("--scenarios", help=f"comma-separated scenarios (default all: {','.join(ALL_SCENARIOS)})")
    parser.add_argument("--gateway-cpus", default="0", help="taskset CPU list for the servers under test (default 0)")
    parser.add_argument("--load-cpus", default="1", help="taskset CPU list for upstream and load generators (default 1)")
    args = parser.parse_args()

    targets = [t.strip() for t in (args.only or ",".join(ALL_TARGETS)).split(",") if t.strip()]
    unknown = set(targets) - set(ALL_TARGETS)
    if unknown:
        parser.error(f"unknown target(s): {', '.join(sorted(unknown))}")
    targets = [t for t in ALL_TARGETS if (t in targets or t == "direct") and t not in args.skip.split(",")]
    scenarios = set((args.scenarios or ",".join(ALL_SCENARIOS)).split(","))
    plan = Plan(
        rounds=args.rounds or 3,
        ns_seconds=args.seconds or (3 if args.quick else 10),
        lat_seconds=args.lat_seconds or (3 if args.quick else 8),
        leak_total=args.leak_requests or (20_000 if args.quick else 100_000),
        leak_seconds=args.leak_seconds,
        targets=targets,
        scenarios=scenarios,
        gateway_cpus=args.gateway_cpus,
        load_cpus=args.load_cpus,
    )
    sys.path.insert(0, str(BENCH))
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(max(soft, 16384), hard), hard))
    os.sched_setaffinity(0, {int(c) for c in plan.load_cpus.split(",")})
    try:
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    except ImportError:
        pass

    ensure_python_deps()
    wrk = ensure_wrk()
    if not wrk:
        plan.notes.append("wrk could not be installed: non-stream scenarios skipped")
    litellm_exe = ensure_litellm() if "litellm" in targets else None
    if "litellm" in targets and not litellm_exe:
        plan.notes.append("LiteLLM could not be installed: its column is skipped")
        targets.remove("litellm")
    types = registered_types()
    for t in ("claude", "router"):
        if t in targets and t not in types:
            note = f"adapter type '{t}' is not in this checkout yet: the {t} scenario is skipped"
            print(f"NOTE: {note}", flush=True)
            plan.notes.append(note)
            targets.remove(t)
    meta = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": os.cpu_count(),
        "cpu": cpu_model(),
        "python": platform.python_version(),
    }
    if litellm_exe:
        meta["litellm"] = litellm_version()
    log(f"targets {','.join(targets)}; scenarios {','.join(sorted(scenarios))}; {plan.rounds} rounds")
    servers: dict[str, Server] = {}
    started = time.monotonic()
    try:
        servers, ports = start_servers(plan, types, litellm_exe)
        log("servers ready: " + ", ".join(f"{n}:{s.port} ({s.rss_mib():.0f} MiB)" for n, s in servers.items()))
        rows = run_rounds(plan, wrk, servers, ports)
        leak = None
        if "leak" in scenarios and "gateway" in servers:
            # a fresh gateway process: the rounds' stream bursts leave freed memory that would hide growth
            old = servers["gateway"]
            for name in [n for n in servers if n != "upstream"]:
                servers.pop(name).stop()
            fresh = Server("gateway-leak", old.cmd, old.cpus, old.port, old.health)
            servers["gateway"] = fresh
            fresh.wait_ready(60)
            log(f"leak check: {plan.leak_total:,} mixed requests through a fresh gateway")
            leak = run_leak(plan, fresh, ports, types & set(targets) | {"gateway"})
            log(f"leak: {leak}")
    finally:
        for server in servers.values():
            server.stop()
    text, checks = report(plan, rows, leak, meta)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    (OUT / f"results-{stamp}.md").write_text(text)
    (OUT / f"results-{stamp}.json").write_text(json.dumps({"meta": meta, "plan": plan.__dict__ | {"scenarios": sorted(scenarios)},
                                                          "rows": rows, "leak": leak, "checks": checks}, indent=1, default=str))
    print()
    print(text)
    log(f"done in {time.monotonic() - started:.0f}s; written {OUT}/results-{stamp}.md and .json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
