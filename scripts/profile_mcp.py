#!/usr/bin/env python3
"""Where a `tools/call` through Maestra goes, counted rather than timed (issue 27).

    .venv/bin/python scripts/profile_mcp.py --maestra BINARY callgrind [--calls 300]
    .venv/bin/python scripts/profile_mcp.py --maestra BINARY syscalls  [--calls 1000]
    .venv/bin/python scripts/profile_mcp.py --maestra BINARY switches  [--calls 2000]

The same set-up as `scripts/bench_mcp.py` (the official Python SDK calling
`time__get_current_time` on `maestra serve`'s /mcp, Maestra calling the reference
`mcp-server-time` over stdio), with 20 warm-up calls before counting starts:
  callgrind  instructions Maestra executes per call (`valgrind --tool=callgrind`, collection
             switched on after the warm-up); the same for the same binary whatever else the
             machine runs. For function names, build with
             CARGO_PROFILE_RELEASE_STRIP=none CARGO_PROFILE_RELEASE_DEBUG=line-tables-only.
             Note: valgrind hides the CPU's SHA extensions, so SHA-256 counts as its
             software fallback here.
  syscalls   system calls per call, by name (`strace -f -c`)
  switches   context switches per call, per thread name, from /proc/PID/task/*/status
"""

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import anyio
import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from procfs import switches

ROOT = Path(__file__).resolve().parent.parent
TIME_SERVER = ROOT / ".venv/bin/mcp-server-time"
TOOL = "time__get_current_time"
WARM_UP = 20


class Counter:
    """Starts and stops the count around the measured calls, and says what it found."""

    def __init__(self, mode: str, pid: int, out: Path):
        self.mode, self.pid, self.out = mode, pid, out

    def start(self) -> None:
        if self.mode == "callgrind":
            subprocess.run(["callgrind_control", "-i", "on", str(self.pid)], check=True,
                           capture_output=True)
        elif self.mode == "syscalls":
            self.strace = subprocess.Popen(["strace", "-f", "-c", "-o", str(self.out), "-p",
                                            str(self.pid)], stderr=subprocess.DEVNULL)
            time.sleep(1)  # attached to every thread before the first counted call
        else:
            self.before = switches(self.pid)

    def stop(self, calls: int) -> None:
        if self.mode == "callgrind":
            subprocess.run(["callgrind_control", "-d", str(self.pid)], check=True,
                           capture_output=True)
        elif self.mode == "syscalls":
            self.strace.send_signal(signal.SIGINT)
            self.strace.wait()
            print(self.out.read_text())
        else:
            after = switches(self.pid)
            for name in sorted(after):
                n = after[name] - self.before.get(name, 0)
                if n:
                    print(f"{name}: {n / calls:.2f} context switches per call")


async def run(url: str, calls: int, counter: Counter) -> None:
    async with httpx2.AsyncClient(trust_env=False, timeout=120) as http:
        async with Client(streamable_http_client(url, http_client=http)) as client:
            await client.list_tools()
            for _ in range(WARM_UP):
                await client.call_tool(TOOL, {"timezone": "UTC"})
            counter.start()
            for _ in range(calls):
                r = await client.call_tool(TOOL, {"timezone": "UTC"})
                assert not r.is_error, r
            counter.stop(calls)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--maestra", default=str(ROOT / "target/release/maestra"))
    ap.add_argument("--calls", type=int)
    ap.add_argument("--out", default="mcp-profile.out", help="callgrind's or strace's file")
    ap.add_argument("mode", choices=["callgrind", "syscalls", "switches"])
    a = ap.parse_args()
    calls = a.calls or {"callgrind": 300, "syscalls": 1000, "switches": 2000}[a.mode]
    out = Path(a.out).resolve()
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        env = {"PATH": os.environ.get("PATH", ""), "HOME": tmp, "MAESTRA_HOME": str(home),
               "MAESTRA_RATE_LIMIT_REQUESTS": "1000000"}
        subprocess.run([a.maestra, "init"], env=env, check=True, capture_output=True)
        toml = home / "maestra.toml"
        toml.write_text(f'[mcp.servers.time]\ncommand = ["{TIME_SERVER}", "--local-timezone", '
                        f'"UTC"]\nkind = "local"\n')
        toml.chmod(0o600)
        wrap = (["valgrind", "--tool=callgrind", "--instr-atstart=no",
                 f"--callgrind-out-file={out}"] if a.mode == "callgrind" else [])
        proc = subprocess.Popen(wrap + [a.maestra, "serve", "--bind", "127.0.0.1:0"], env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        url = None
        for line in proc.stdout:
            if line.startswith("maestra listening on "):
                url = line.split()[-1] + "/mcp"
                break
        if url is None:
            sys.exit("maestra did not start")
        try:
            anyio.run(run, url, calls, Counter(a.mode, proc.pid, out))
        finally:
            proc.terminate()
            proc.wait(timeout=120)
    if a.mode == "callgrind":
        # The dump of the counted calls is the file callgrind_control -d wrote: OUT.1.
        dump = Path(f"{out}.1")
        total = next(int(l.split()[1]) for l in dump.read_text().splitlines()
                     if l.startswith("summary:"))
        print(f"{total / calls:,.0f} instructions per call ({calls} calls; {dump})")


if __name__ == "__main__":
    main()
