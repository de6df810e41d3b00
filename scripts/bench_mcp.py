#!/usr/bin/env python3
"""CPU per MCP `tools/call` through Maestra against the same calls made directly (issue 27).

    .venv/bin/python scripts/bench_mcp.py [--maestra target/release/maestra] [--calls 500]

One run, both sides, with the official Python SDK as the client and the reference
`mcp-server-time` as the tool server:
  direct  the SDK client starts mcp-server-time over stdio and calls it;
  maestra the SDK client calls `time__get_current_time` on `maestra serve`'s /mcp, and Maestra
          calls the same program over stdio.
CPU comes from /proc (user + system) for each process: the client (this process), Maestra,
and the tool server. The target: Maestra adds less CPU per call than the client spends when
it calls the server directly.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import anyio
import httpx2
from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from procfs import cpu_seconds

ROOT = Path(__file__).resolve().parent.parent
TIME_SERVER = ROOT / ".venv/bin/mcp-server-time"


def children(pid: int) -> list[int]:
    out = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        out += [int(c) for c in text]
    return out


async def calls(client: Client, name: str, n: int) -> list[float]:
    await client.list_tools()
    latencies = []
    for _ in range(n):
        start = time.perf_counter()
        r = await client.call_tool(name, {"timezone": "UTC"})
        latencies.append(time.perf_counter() - start)
        assert not r.is_error, r
    return latencies


def summary(label: str, lat: list[float], cpu: dict[str, float], n: int) -> dict:
    lat_ms = sorted(x * 1000 for x in lat)
    row = {
        "run": label,
        "calls_per_s": round(n / sum(lat), 1),
        "p50_ms": round(statistics.median(lat_ms), 3),
        "p99_ms": round(lat_ms[int(len(lat_ms) * 0.99) - 1], 3),
    }
    for who, seconds in cpu.items():
        row[f"cpu_ms_per_call_{who}"] = round(seconds * 1000 / n, 3)
    return row


async def direct(n: int) -> dict:
    params = StdioServerParameters(command=str(TIME_SERVER), args=["--local-timezone", "UTC"])
    async with Client(params) as client:
        await client.list_tools()
        server = [p for p in children(os.getpid())][-1]
        me0, srv0 = cpu_seconds(os.getpid()), cpu_seconds(server)
        lat = await calls(client, "get_current_time", n)
        me1, srv1 = cpu_seconds(os.getpid()), cpu_seconds(server)
    return summary("direct (stdio)", lat, {"client": me1 - me0, "tool_server": srv1 - srv0}, n)


async def through(url: str, maestra: int, n: int) -> dict:
    async with httpx2.AsyncClient(trust_env=False, timeout=60) as http:
        async with Client(streamable_http_client(url, http_client=http)) as client:
            await client.call_tool("time__get_current_time", {"timezone": "UTC"})  # starts it
            server = children(maestra)[-1]
            me0, m0, srv0 = cpu_seconds(os.getpid()), cpu_seconds(maestra), cpu_seconds(server)
            lat = await calls(client, "time__get_current_time", n)
            me1, m1, srv1 = cpu_seconds(os.getpid()), cpu_seconds(maestra), cpu_seconds(server)
    return summary(
        "through maestra (HTTP, then stdio)",
        lat,
        {"client": me1 - me0, "maestra": m1 - m0, "tool_server": srv1 - srv0},
        n,
    )


def start_maestra(binary: str, home: Path) -> tuple[subprocess.Popen, str]:
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(home.parent), "MAESTRA_HOME": str(home),
           "MAESTRA_RATE_LIMIT_REQUESTS": "1000000"}
    subprocess.run([binary, "init"], env=env, check=True, capture_output=True)
    toml = home / "maestra.toml"
    toml.write_text(f'[mcp.servers.time]\ncommand = ["{TIME_SERVER}", "--local-timezone", "UTC"]\nkind = "local"\n')
    toml.chmod(0o600)
    proc = subprocess.Popen([binary, "serve", "--bind", "127.0.0.1:0"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    for line in proc.stdout:
        if line.startswith("maestra listening on "):
            return proc, line.split()[-1] + "/mcp"
    sys.exit("maestra did not start")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--maestra", default=str(ROOT / "target/release/maestra"))
    ap.add_argument("--calls", type=int, default=500)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        proc, url = start_maestra(args.maestra, Path(tmp) / "home")
        try:
            rows = [anyio.run(direct, args.calls), anyio.run(through, url, proc.pid, args.calls)]
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    for row in rows:
        print(json.dumps(row))
    # The target's baseline is the client calling the server directly (over stdio): the HTTP
    # client Maestra is reached with costs more, which would flatter the comparison.
    added = rows[1]["cpu_ms_per_call_maestra"]
    client = rows[0]["cpu_ms_per_call_client"]
    print(json.dumps({"maestra_added_cpu_ms_per_call": added,
                      "direct_client_cpu_ms_per_call": client, "target_met": added < client}))


if __name__ == "__main__":
    main()
