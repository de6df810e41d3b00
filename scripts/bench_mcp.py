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

Both sides stay connected for the whole run and take turns: each of --rounds rounds makes
--calls direct calls and --calls through Maestra, the order swapped every round, so a change of
the machine's speed during the run (other work on the shared cores) lands on both sides of a
round alike. Each round gives one ratio (Maestra's CPU per call over the direct client's);
reported: every round, and the median and range of the ratios. CPU is counted in 10 ms ticks:
keep --calls at 500 or more.
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


class Side:
    """One side of the comparison, connected for the whole run: its client, the tool to call,
    and the processes whose CPU it counts."""

    def __init__(self, label: str, client: Client, tool: str, pids: dict[str, int]):
        self.label, self.client, self.tool, self.pids = label, client, tool, pids

    async def measure(self, n: int) -> dict:
        pids = {"client": os.getpid(), **self.pids}
        before = {who: cpu_seconds(pid) for who, pid in pids.items()}
        lat = await calls(self.client, self.tool, n)
        after = {who: cpu_seconds(pid) for who, pid in pids.items()}
        return summary(self.label, lat, {w: after[w] - before[w] for w in pids}, n)


async def run(url: str, maestra: int, n: int, rounds: int) -> list[tuple[dict, dict]]:
    params = StdioServerParameters(command=str(TIME_SERVER), args=["--local-timezone", "UTC"])
    async with Client(params) as stdio_client:
        await stdio_client.list_tools()
        direct_server = children(os.getpid())[-1]
        async with httpx2.AsyncClient(trust_env=False, timeout=60) as http:
            async with Client(streamable_http_client(url, http_client=http)) as http_client:
                # The first call starts the tool program under Maestra.
                await http_client.call_tool("time__get_current_time", {"timezone": "UTC"})
                direct = Side("direct (stdio)", stdio_client, "get_current_time",
                              {"tool_server": direct_server})
                through = Side("through maestra (HTTP, then stdio)", http_client,
                               "time__get_current_time",
                               {"maestra": maestra, "tool_server": children(maestra)[-1]})
                # Warm both paths before anything is counted.
                await calls(stdio_client, direct.tool, 50)
                await calls(http_client, through.tool, 50)
                out = []
                for r in range(rounds):
                    first, second = (direct, through) if r % 2 == 0 else (through, direct)
                    a = await first.measure(n)
                    b = await second.measure(n)
                    out.append((a, b) if first is direct else (b, a))
                return out


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
    ap.add_argument("--calls", type=int, default=1000, help="per side and round")
    ap.add_argument("--rounds", type=int, default=6)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        proc, url = start_maestra(args.maestra, Path(tmp) / "home")
        try:
            rounds = anyio.run(run, url, proc.pid, args.calls, args.rounds)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    # The target's baseline is the client calling the server directly (over stdio): the HTTP
    # client Maestra is reached with costs more, which would flatter the comparison.
    ratios = []
    for i, (direct, through) in enumerate(rounds):
        print(json.dumps({"round": i + 1, **direct}))
        print(json.dumps({"round": i + 1, **through}))
        ratios.append(through["cpu_ms_per_call_maestra"] / direct["cpu_ms_per_call_client"])
    median = statistics.median(ratios)
    print(json.dumps({
        "maestra_over_direct_client": [round(r, 2) for r in ratios],
        "median": round(median, 2),
        "range": [round(min(ratios), 2), round(max(ratios), 2)],
        "maestra_cpu_ms_per_call_median": statistics.median(t["cpu_ms_per_call_maestra"] for _, t in rounds),
        "direct_client_cpu_ms_per_call_median": statistics.median(d["cpu_ms_per_call_client"] for d, _ in rounds),
        "target_met": median < 1 and max(ratios) < 1,
    }))


if __name__ == "__main__":
    main()
