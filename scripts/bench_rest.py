#!/usr/bin/env python3
"""What `maestra serve` costs at rest and at one request a second (issue 29).

    python3 scripts/bench_rest.py [--seconds 60] BINARY [BINARY...]
    python3 scripts/bench_rest.py --one-a-second [--seconds 60] BINARY [BINARY...]

Each binary serves the embedded default (a fresh home from `maestra init`, nothing else
configured) and, after a 5-second settle, is measured for `--seconds`: left alone, or sent one
`POST /api/maestra/core` a second (a new conversation each: answered by a mock local model in
this script, stored, audited). A wake-up is a context switch of any of its threads (voluntary
or not, from /proc/PID/task/*/status), summed over the threads; CPU is user + system time
from /proc/PID/stat. Binaries run one after the other, so two builds compare in one run.
"""

import argparse
import http.server
import json
import threading
import urllib.request
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from procfs import cpu_seconds, switches

SETTLE = 5


class MockModel(http.server.BaseHTTPRequestHandler):
    """A local model that answers every chat completion at once."""

    protocol_version = "HTTP/1.1"

    def do_POST(self):
        self.rfile.read(int(self.headers.get("content-length", 0)))
        body = json.dumps({
            "id": "chatcmpl-1", "object": "chat.completion", "created": 0, "model": "llama3.2",
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": "It is sunny."}}],
            "usage": {"prompt_tokens": 9, "completion_tokens": 3, "total_tokens": 12},
        }).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def mock_model() -> str:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), MockModel)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_address[1]}/v1"


def one_request(url: str) -> None:
    body = json.dumps({"user_id": "bench", "surface_id": "cli",
                       "message": "what is the weather?"}).encode()
    req = urllib.request.Request(url, data=body, headers={"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as r:
        r.read()
        assert r.status == 200, r.status


def measure(binary: str, seconds: int, model: str | None) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        env = {"PATH": os.environ.get("PATH", ""), "HOME": tmp,
               "MAESTRA_HOME": str(Path(tmp) / "home")}
        if model:
            env["MAESTRA_LOCAL_MODEL_URL"] = model
        subprocess.run([binary, "init"], env=env, check=True, capture_output=True)
        proc = subprocess.Popen([binary, "serve", "--bind", "127.0.0.1:0"], env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        try:
            for line in proc.stdout:
                if line.startswith("maestra listening on "):
                    url = line.split()[-1] + "/api/maestra/core"
                    break
            else:
                sys.exit(f"{binary} did not start")
            if model:
                one_request(url)  # the first request's one-off work (pools, caches)
            time.sleep(SETTLE)
            s0, c0 = switches(proc.pid), cpu_seconds(proc.pid)
            start = time.monotonic()
            for i in range(seconds):
                if model:
                    one_request(url)
                time.sleep(max(0.0, start + i + 1 - time.monotonic()))
            s1, c1 = switches(proc.pid), cpu_seconds(proc.pid)
        finally:
            proc.terminate()
            proc.wait(timeout=60)
    per_thread = {k: round((s1[k] - s0.get(k, 0)) / seconds, 2) for k in s1
                  if s1[k] != s0.get(k, 0)}
    woken = sum(s1.values()) - sum(s0.values())
    if model:
        return {
            "binary": binary,
            "requests": seconds,
            "cpu_ms_per_request": round((c1 - c0) * 1000 / seconds, 2),
            "switches_per_request": round(woken / seconds, 1),
            "switches_per_request_by_thread": per_thread,
        }
    return {
        "binary": binary,
        "seconds": seconds,
        "wakeups_per_s": round(woken / seconds, 2),
        "cpu_ms_per_min": round((c1 - c0) * 1000 * 60 / seconds, 1),
        "wakeups_per_s_by_thread": per_thread,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=int, default=60)
    ap.add_argument("--one-a-second", action="store_true")
    ap.add_argument("binaries", nargs="+")
    a = ap.parse_args()
    model = mock_model() if a.one_a_second else None
    for b in a.binaries:
        print(json.dumps(measure(b, a.seconds, model)))


if __name__ == "__main__":
    main()
