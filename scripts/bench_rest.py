#!/usr/bin/env python3
"""What `maestra serve` costs at rest (issue 29): wake-ups per second and CPU per minute.

    python3 scripts/bench_rest.py [--seconds 60] BINARY [BINARY...]

Each binary serves the embedded default (a fresh home from `maestra init`, nothing
configured, no request) and is left alone for `--seconds` after a 5-second settle. A
wake-up is a context switch of any of its threads (voluntary or not, from
/proc/PID/task/*/status), summed over the threads; CPU is user + system time from
/proc/PID/stat. Binaries run one after the other, so two builds compare in one run.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from procfs import cpu_seconds, switches

SETTLE = 5


def at_rest(binary: str, seconds: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        env = {"PATH": os.environ.get("PATH", ""), "HOME": tmp,
               "MAESTRA_HOME": str(Path(tmp) / "home")}
        subprocess.run([binary, "init"], env=env, check=True, capture_output=True)
        proc = subprocess.Popen([binary, "serve", "--bind", "127.0.0.1:0"], env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        try:
            for line in proc.stdout:
                if line.startswith("maestra listening on "):
                    break
            else:
                sys.exit(f"{binary} did not start")
            time.sleep(SETTLE)
            s0, c0 = switches(proc.pid), cpu_seconds(proc.pid)
            time.sleep(seconds)
            s1, c1 = switches(proc.pid), cpu_seconds(proc.pid)
        finally:
            proc.terminate()
            proc.wait(timeout=60)
    per_thread = {k: round((s1[k] - s0.get(k, 0)) / seconds, 2) for k in s1
                  if s1[k] != s0.get(k, 0)}
    return {
        "binary": binary,
        "seconds": seconds,
        "wakeups_per_s": round((sum(s1.values()) - sum(s0.values())) / seconds, 2),
        "cpu_ms_per_min": round((c1 - c0) * 1000 * 60 / seconds, 1),
        "wakeups_per_s_by_thread": per_thread,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=int, default=60)
    ap.add_argument("binaries", nargs="+")
    a = ap.parse_args()
    for b in a.binaries:
        print(json.dumps(at_rest(b, a.seconds)))


if __name__ == "__main__":
    main()
