#!/usr/bin/env python3
"""CPU per request that minimisation adds to a cloud call, on a 2 kB prompt (issue 30).

    python3 scripts/bench_minimise_cpu.py [--maestra target/release/maestra]
        [--requests 2000] [--rounds 5] [--warmup 200] [--wait-quiet 40] [--json OUT] [--accents]

One run, four `maestra serve` instances of the same binary side by side, each with its own
MAESTRA_HOME, all pointed at one mock OpenAI-compatible upstream (a separate Python process, so
its CPU is its own: the floor, what answering costs at all):
  (a) local     `llama3.2` on the local route: never minimised;
  (b) off       `gpt-4o-mini`, MAESTRA_OPENAI_MINIMISE=off: the cloud path, only secrets looked for;
  (c) standard  `gpt-4o-mini`, MAESTRA_OPENAI_MINIMISE=standard (the default);
  (d) strict    `gpt-4o-mini`, MAESTRA_OPENAI_MINIMISE=strict.
The same ~2,000-byte prompt (a note with two e-mail addresses, a phone number, an IBAN, a card
number, an IP address and a plain URL; with --accents signed off with typographic quotes, a
dash and an accented name) goes to each as `POST /v1/chat/completions`, from one
client thread over one keep-alive connection per instance. The mock echoes the last user
message; every reply is checked to be HTTP 200 and the prompt itself (restored, for the cloud);
once per configuration the body the mock received is checked (placeholders for (c) and (d), the
values themselves for (a) and (b)).

A round sends --requests to each configuration in turn (the order rotated each round, so drift
lands on all alike). CPU is user + system time from /proc/PID/stat over the configuration's
share of the round (10 ms ticks: over 2,000 requests a tick is 5 us a request). Reported: the
median over rounds per configuration, its range, and what (c) and (d) add over (b) and over (a),
as a percentage of (a)'s CPU per request, the gateway's own. Target: under 20 %.

--wait-quiet MINUTES waits (polling every 30 s) until no cargo, rustc, nextest or test binary
(target/*/deps/*) runs, then measures anyway and says so. Each round also notes whether one ran.
"""

import argparse
import http.client
import http.server
import json
import os
import platform
import re
import shlex
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from procfs import cpu_seconds  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent

OPENAI_KEY = "sk-bench-not-a-real-key-0000000000"
CLOUD_MODEL = "gpt-4o-mini"
LOCAL_MODEL = "llama3.2"
PRICING = '[pricing."gpt-4o-mini"]\ninput_per_million = 0.0\noutput_per_million = 0.0\n'

# (label, model, MAESTRA_OPENAI_MINIMISE or None)
CONFIGS = (
    ("(a) local", LOCAL_MODEL, None),
    ("(b) off", CLOUD_MODEL, "off"),
    ("(c) standard", CLOUD_MODEL, "standard"),
    ("(d) strict", CLOUD_MODEL, "strict"),
)

EMAIL_1 = "ann.lee@example.org"
EMAIL_2 = "j.moreau@northwind-example.com"
VALUES = {
    "EMAIL": [EMAIL_1, EMAIL_2],
    "PHONE": ["+44 20 7946 0018"],
    "IBAN": ["DE89 3704 0044 0532 0130 00"],
    "CARD": ["4111 1111 1111 1111"],
    "IP": ["203.0.113.7"],
    "URL": ["https://www.example.com/help/returns"],  # a plain URL: withheld only when strict
}

PROMPT = f"""Please summarise this e-mail thread for me and draft a short, polite reply.

From: {EMAIL_1}
To: {EMAIL_2}
Subject: Re: replacement order and refund for the May invoice

Hello,

Thank you for getting back to me so quickly last week. As I said on the phone, the second
parcel arrived on Thursday afternoon, but the box had been opened and two of the six glass
jars inside were broken. I have kept the packaging and taken photographs of everything, in
case your courier wants to see them. The rest of the order was fine and we are very happy
with the quality, so I would rather not cancel it altogether.

Could you either send two replacement jars with the next delivery, or refund the difference
to the account you already have on file? For reference, that is IBAN
{VALUES["IBAN"][0]}; the original payment went through on the card ending in the number
{VALUES["CARD"][0]}, if it is easier to refund it there instead. I do not mind which,
as long as it does not take another month: the last refund took almost five weeks to appear.

Your returns page ({VALUES["URL"][0]}) says that damaged items must be reported within
fourteen days, which is why I am writing now rather than waiting for the end of the month.
I tried to fill in the online form twice, but it kept timing out; our office connection
shows up as {VALUES["IP"][0]} in case your support team needs to look at the logs.

If anything is unclear, you can reach me on {VALUES["PHONE"][0]} between nine and five on
weekdays, or simply reply to this message. I am away from the twentieth for about ten days,
so it would be good to have this settled before then, if at all possible.

Many thanks for your help, and apologies for the long message.

Kind regards,
Ann

The reply should thank them, confirm that either a replacement or a refund is fine, mention
the dates I am away, and stay under one hundred and fifty words. Keep a friendly tone and do
not repeat the account or card numbers in the reply.
"""

# --accents: the same prompt signed off as people write, with typographic punctuation and an
# accented name. One character outside ASCII is enough to change which regex engine can run
# (a Unicode word boundary stops the lazy DFA at the first such byte), so both are measured.
ACCENTED_SIGN_OFF = "Kind regards,\nAnn — sent from Zoë’s phone, “excuse the typos”"

QUIET_POLL_S = 30
BUSY_NAMES = {"cargo", "rustc", "cargo-nextest", "nextest"}


# ---------------------------------------------------------------------------------------------
# The mock upstream (run as a child process: `--serve-mock`).


class MockUpstream(http.server.BaseHTTPRequestHandler):
    """OpenAI's chat completions, answering with the last user message at once. `GET /last`
    returns the last chat body received, for the benchmark's one check per configuration."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    last = b""

    def _send(self, status: int, body: bytes) -> None:
        reason = self.responses.get(status, ("",))[0]
        self.wfile.write(
            f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\n\r\n".encode() + body
        )

    def do_POST(self):
        raw = self.rfile.read(int(self.headers.get("content-length", 0)))
        if self.path != "/v1/chat/completions":
            self._send(404, b'{"error": {"message": "not found"}}')
            return
        MockUpstream.last = raw
        req = json.loads(raw)
        text = ""
        for m in reversed(req.get("messages", [])):
            if m.get("role") == "user":
                c = m.get("content")
                if isinstance(c, list):
                    c = "".join(p.get("text", "") for p in c if isinstance(p, dict))
                text = c or ""
                break
        prompt_tokens = len(raw) // 4
        completion_tokens = max(1, len(text) // 4)
        body = json.dumps({
            "id": "chatcmpl-bench", "object": "chat.completion", "created": 0,
            "model": req.get("model", ""),
            "choices": [{"index": 0, "finish_reason": "stop", "logprobs": None,
                         "message": {"role": "assistant", "content": text}}],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                      "total_tokens": prompt_tokens + completion_tokens},
        }).encode()
        self._send(200, body)

    def do_GET(self):
        if self.path == "/last":
            self._send(200, MockUpstream.last)
        else:
            self._send(404, b"{}")

    def log_message(self, *args):
        pass


def serve_mock() -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), MockUpstream)
    server.daemon_threads = True
    print(f"mock listening on 127.0.0.1:{server.server_address[1]}", flush=True)
    server.serve_forever()


class Mock:
    def __init__(self):
        self.proc = subprocess.Popen([sys.executable, __file__, "--serve-mock"],
                                     stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
        line = self.proc.stdout.readline()
        if not line.startswith("mock listening on "):
            sys.exit("the mock upstream did not start")
        self.addr = line.split()[-1]
        self.pid = self.proc.pid

    def last(self) -> str:
        host, port = self.addr.split(":")
        c = http.client.HTTPConnection(host, int(port), timeout=30)
        c.request("GET", "/last")
        r = c.getresponse()
        body = r.read().decode()
        c.close()
        return body

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)


# ---------------------------------------------------------------------------------------------
# Maestra instances.


class Instance:
    def __init__(self, binary: str, label: str, model: str, level: str | None, mock: str):
        self.label, self.model, self.level = label, model, level
        self.tmp = tempfile.TemporaryDirectory(prefix="maestra-bench-cpu-")
        home = Path(self.tmp.name) / "home"
        env = {
            "PATH": os.environ.get("PATH", ""),
            "HOME": self.tmp.name,
            "MAESTRA_HOME": str(home),
            "MAESTRA_LOCAL_MODEL_URL": f"http://{mock}/v1",
            "MAESTRA_OPENAI_BASE_URL": f"http://{mock}/v1",
            "MAESTRA_LOCAL_MODEL": LOCAL_MODEL,
            "MAESTRA_OPENAI_KEY": OPENAI_KEY,
            "MAESTRA_RATE_LIMIT_REQUESTS": "1000000",
            "MAESTRA_DAILY_COST_LIMIT": "1000000",
            "MAESTRA_MONTHLY_COST_LIMIT": "1000000",
        }
        if level is not None:
            env["MAESTRA_OPENAI_MINIMISE"] = level
        subprocess.run([binary, "init"], env=env, check=True, capture_output=True,
                       cwd=self.tmp.name)
        home.chmod(0o700)
        toml = home / "maestra.toml"
        toml.write_text(PRICING)
        toml.chmod(0o600)
        self.stderr = open(Path(self.tmp.name) / "serve.stderr", "w+")
        self.proc = subprocess.Popen([binary, "serve", "--bind", "127.0.0.1:0"], env=env,
                                     cwd=self.tmp.name, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=self.stderr, text=True)
        self.pid = self.proc.pid
        for line in self.proc.stdout:
            if line.startswith("maestra listening on http://"):
                self.addr = line.strip().removeprefix("maestra listening on http://")
                break
        else:
            self.stderr.seek(0)
            sys.exit(f"{label}: maestra serve did not start:\n{self.stderr.read()}")
        # Keep its stdout drained, so a full pipe never blocks it.
        threading.Thread(target=lambda: [None for _ in self.proc.stdout], daemon=True).start()
        self.body = json.dumps({"model": model,
                                "messages": [{"role": "user", "content": PROMPT}]}).encode()
        self.conn = None
        self.reconnects = -1
        self.connect()

    def connect(self) -> None:
        if self.conn is not None:
            self.conn.close()
        host, port = self.addr.rsplit(":", 1)
        self.conn = http.client.HTTPConnection(host, int(port), timeout=60)
        self.conn.connect()
        self.conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.reconnects += 1

    def one(self) -> None:
        """One request, its answer checked; a keep-alive connection the server closed while
        idle is opened again (and counted) before the request is sent once more."""
        for attempt in (0, 1):
            try:
                self.conn.request("POST", "/v1/chat/completions", body=self.body,
                                  headers={"content-type": "application/json"})
                r = self.conn.getresponse()
                data = r.read()
                break
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                if attempt:
                    raise
                self.connect()
        if r.status != 200:
            raise SystemExit(f"{self.label}: HTTP {r.status}: {data[:500]!r}")
        reply = json.loads(data)["choices"][0]["message"]["content"]
        if reply != PROMPT:
            raise SystemExit(f"{self.label}: the reply is not the prompt:\n{reply[:800]}")

    def stop(self) -> None:
        if self.conn is not None:
            self.conn.close()
        self.proc.terminate()
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.stderr.close()
        self.tmp.cleanup()


def check_path(inst: Instance, mock: Mock) -> list[str]:
    """One request, then what the mock received: the placeholders' kinds it saw."""
    inst.one()
    sent = json.loads(mock.last())
    if sent.get("model") != inst.model:
        sys.exit(f"{inst.label}: the mock's last request was for {sent.get('model')!r}")
    text = json.dumps(sent)
    if inst.level in ("standard", "strict"):
        if "<EMAIL_1>" not in text or EMAIL_1 in text or EMAIL_2 in text:
            sys.exit(f"{inst.label}: the e-mail addresses were not withheld: {text[:800]}")
        for kind, values in VALUES.items():
            for v in values:
                if v in text and not (kind == "URL" and inst.level == "standard"):
                    sys.exit(f"{inst.label}: {kind} {v!r} reached the cloud")
    else:
        if EMAIL_1 not in text or "<EMAIL_" in text:
            sys.exit(f"{inst.label}: expected the prompt unchanged upstream: {text[:800]}")
    return sorted(set(re.findall(r"<([A-Z]+)_\d+>", text)))


# ---------------------------------------------------------------------------------------------
# The machine.


def busy() -> list[str]:
    """Other people's builds and tests running now: cargo, rustc, nextest, test binaries."""
    out = []
    mine = {os.getpid()}
    for p in Path("/proc").iterdir():
        if not p.name.isdigit() or int(p.name) in mine:
            continue
        try:
            comm = (p / "comm").read_text().strip()
            argv0 = (p / "cmdline").read_bytes().split(b"\0", 1)[0].decode(errors="replace")
        except OSError:
            continue
        if (comm in BUSY_NAMES or comm.startswith("maestra-")
                or ("/target" in argv0 and "/deps/" in argv0)):
            out.append(f"{p.name} {comm} {argv0}")
    return out


def wait_quiet(minutes: float) -> bool:
    """True once nothing else builds or tests; False when still busy after `minutes`."""
    deadline = time.monotonic() + minutes * 60
    while True:
        b = busy()
        if not b:
            return True
        if time.monotonic() >= deadline:
            print(f"# still busy after {minutes} min, measuring anyway: {b[:5]}", file=sys.stderr)
            return False
        print(f"# busy ({len(b)}: {b[0]}), waiting {QUIET_POLL_S} s", file=sys.stderr)
        time.sleep(QUIET_POLL_S)


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.machine()


def git_rev() -> str:
    try:
        rev = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--", "src"],
                               capture_output=True, text=True, check=True).stdout.strip()
        return rev + (", with uncommitted changes under src/" if dirty else ", src/ clean")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


# ---------------------------------------------------------------------------------------------
# Measuring.


def measure(inst: Instance, mock: Mock, n: int) -> dict:
    was_busy = bool(busy())
    s0, m0, me0 = cpu_seconds(inst.pid), cpu_seconds(mock.pid), time.process_time()
    t0 = time.perf_counter()
    for _ in range(n):
        inst.one()
    wall = time.perf_counter() - t0
    s1, m1, me1 = cpu_seconds(inst.pid), cpu_seconds(mock.pid), time.process_time()
    return {
        "config": inst.label,
        "requests": n,
        "maestra_us": (s1 - s0) * 1e6 / n,
        "mock_us": (m1 - m0) * 1e6 / n,
        "client_us": (me1 - me0) * 1e6 / n,
        "wall_us": wall * 1e6 / n,
        "busy": was_busy or bool(busy()),
    }


def fmt_us(x: float) -> str:
    return f"{x:.1f} µs"


def pct(x: float, base: float) -> str:
    return f"{x / base * 100:+.1f} %"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--maestra", default=str(ROOT / "target/release/maestra"))
    ap.add_argument("--requests", type=int, default=2000, help="per configuration and round")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=200, help="per configuration, not measured")
    ap.add_argument("--wait-quiet", type=float, metavar="MINUTES", default=None,
                    help="first wait up to MINUTES for other builds and tests to end")
    ap.add_argument("--json", metavar="OUT", help="also write every round's numbers here")
    ap.add_argument("--accents", action="store_true",
                    help="sign the prompt off with typographic punctuation and an accented name")
    ap.add_argument("--serve-mock", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.serve_mock:
        serve_mock()
        return
    if a.accents:
        global PROMPT
        PROMPT = PROMPT.replace("Kind regards,\nAnn", ACCENTED_SIGN_OFF)
        assert not PROMPT.isascii()
    command = shlex.join(["python3", "scripts/bench_minimise_cpu.py", *sys.argv[1:]])
    binary = str(Path(a.maestra).resolve())
    version = subprocess.run([binary, "--version"], capture_output=True, text=True).stdout.strip()

    quiet = True
    if a.wait_quiet is not None:
        quiet = wait_quiet(a.wait_quiet)
    started = datetime.now(timezone.utc)
    load_before = loadavg()

    mock = Mock()
    instances: list[Instance] = []
    rows: list[dict] = []
    kinds: dict[str, list[str]] = {}
    try:
        for label, model, level in CONFIGS:
            instances.append(Instance(binary, label, model, level, mock.addr))
        for inst in instances:
            kinds[inst.label] = check_path(inst, mock)
            for _ in range(a.warmup):
                inst.one()
        for r in range(a.rounds):
            k = r % len(instances)
            for inst in instances[k:] + instances[:k]:
                row = measure(inst, mock, a.requests)
                row["round"] = r + 1
                rows.append(row)
                print(json.dumps({k2: round(v, 2) if isinstance(v, float) else v
                                  for k2, v in row.items()}), file=sys.stderr, flush=True)
        reconnects = {i.label: i.reconnects for i in instances}
    finally:
        for inst in instances:
            inst.stop()
        mock.stop()
    finished = datetime.now(timezone.utc)

    by = {label: [x for x in rows if x["config"] == label] for label, _, _ in CONFIGS}
    med = {c: {f: statistics.median(x[f] for x in v) for f in
               ("maestra_us", "mock_us", "client_us", "wall_us")} for c, v in by.items()}
    a_, b_ = "(a) local", "(b) off"
    base = med[a_]["maestra_us"]

    def per_round(c: str, ref: str) -> list[float]:
        """(c - ref) / (a), each round on its own: the noise of the added figure."""
        out = []
        for r in range(1, a.rounds + 1):
            x = {y["config"]: y["maestra_us"] for y in rows if y["round"] == r}
            out.append((x[c] - x[ref]) / x[a_] * 100)
        return out

    lines = []
    lines.append(f"Run of {started:%Y-%m-%d, %H:%M}-{finished:%H:%M} UTC; {cpu_model()}, "
                 f"{os.cpu_count()} cores; load average before {load_before}"
                 + ("" if quiet else "; **other builds or tests were running at the start**")
                 + ".")
    lines.append(f"Binary: `{binary}` (`{version}`); the repository when run: {git_rev()}. Prompt: "
                 f"{len(PROMPT.encode())} bytes ({'with' if a.accents else 'no'} characters outside ASCII), one user message; {a.requests:,} requests per "
                 f"configuration and round, {a.rounds} rounds, {a.warmup} warm-up requests each.")
    lines.append("")
    lines.append("```")
    lines.append(command)
    lines.append("```")
    lines.append("")
    lines.append("| configuration | withheld upstream | Maestra CPU/request (median) | range over "
                 "rounds | added over (b) | added over (a) | mock CPU/request | wall/request |")
    lines.append("|---|---|---|---|---|---|---|---|")
    for label, model, level in CONFIGS:
        v = [x["maestra_us"] for x in by[label]]
        m = med[label]["maestra_us"]
        rng = f"{min(v):.1f}-{max(v):.1f} µs (±{(max(v) - min(v)) / 2 / m * 100:.0f} %)"
        over_b = over_a = ""
        if label not in (a_, b_):
            ob, oa = m - med[b_]["maestra_us"], m - base
            rb, ra = per_round(label, b_), per_round(label, a_)
            over_b = (f"{ob:+.1f} µs, **{pct(ob, base)}** of (a) "
                      f"(rounds {min(rb):+.0f} to {max(rb):+.0f} %)")
            over_a = (f"{oa:+.1f} µs, **{pct(oa, base)}** of (a) "
                      f"(rounds {min(ra):+.0f} to {max(ra):+.0f} %)")
        elif label == b_:
            ra = per_round(label, a_)
            over_a = (f"{m - base:+.1f} µs, {pct(m - base, base)} of (a) "
                      f"(rounds {min(ra):+.0f} to {max(ra):+.0f} %)")
        withheld = ", ".join(kinds[label]) or "nothing"
        name = f"{label} `{model}`" + (f", minimise={level}" if level else "")
        lines.append(f"| {name} | {withheld} | {fmt_us(m)} | {rng} | {over_b} | {over_a} | "
                     f"{fmt_us(med[label]['mock_us'])} | {fmt_us(med[label]['wall_us'])} |")
    lines.append("")
    verdicts = []
    for label in ("(c) standard", "(d) strict"):
        m = med[label]["maestra_us"]
        ob = (m - med[b_]["maestra_us"]) / base * 100
        oa = (m - base) / base * 100
        verdicts.append(f"{label}: {ob:+.1f} % over (b), {oa:+.1f} % over (a) — "
                        + ("**met**" if max(ob, oa) < 20 else
                           "**met over (b) only**" if ob < 20 else "**not met**"))
    lines.append("Target, added CPU under 20 % of the gateway's own ((a)'s CPU per request): "
                 + "; ".join(verdicts) + ".")
    busy_rounds = sorted({x["round"] for x in rows if x["busy"]})
    notes = [f"client CPU/request (this script) median "
             f"{statistics.median(x['client_us'] for x in rows):.0f} µs"]
    if busy_rounds:
        notes.append(f"another build or test ran during round(s) {busy_rounds}")
    if any(reconnects.values()):
        notes.append(f"keep-alive connections reopened: {reconnects}")
    lines.append("")
    lines.append("Notes: " + "; ".join(notes) + ".")
    print("\n".join(lines))
    if a.json:
        Path(a.json).write_text(json.dumps({"command": command, "binary": binary,
                                            "version": version, "rows": rows,
                                            "medians": med, "withheld": kinds}, indent=1))


if __name__ == "__main__":
    main()
