"""A client of the `maestra serve` in the discovering namespace (tests/discover_server.rs runs
it there with `ip netns exec`, since the server listens on that namespace's loopback).

Usage: api_client.py BASE_URL

Waits for the server, reads the Devices list, makes one call through the services proxy (to the
responder's Home Assistant), sends bad bodies to POST /api/services/discover, starts a run
(4 s), starts again while it runs, polls every job started until it is done, and reads the
Devices list again. Prints every answer as one JSON document; the test checks them. Every wait
has a deadline (a hang guard), none is a fixed sleep.
"""

import json
import sys
import time
import urllib.error
import urllib.request

BASE = sys.argv[1].rstrip("/")
WITHIN = 120


def call(method, path, body=None, content_type="application/json"):
    data = None
    if body is not None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
    req = urllib.request.Request(BASE + path, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", content_type)
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return [r.status, json.loads(r.read())]
    except urllib.error.HTTPError as e:
        return [e.code, json.loads(e.read() or b"null")]


def wait_for_server():
    deadline = time.time() + WITHIN
    while True:
        try:
            return call("GET", "/health")
        except OSError:
            if time.time() > deadline:
                raise
            time.sleep(0.2)


def finished(job):
    deadline = time.time() + WITHIN
    while job["state"] == "running":
        if time.time() > deadline:
            raise SystemExit(f"job {job['id']} did not finish within {WITHIN} s")
        time.sleep(0.3)
        job = call("GET", "/api/jobs/" + job["id"])[1]
    return job


wait_for_server()
out = {"before": call("GET", "/api/devices")}
out["proxied"] = call("GET", "/api/services/home_assistant/api/")
out["bad"] = [call("POST", "/api/services/discover", b)
              for b in [{"timeout_ms": 999}, {"timeout_ms": 120001}, {"timeout_ms": "5s"},
                        {"timeout": 5}, [1], b"{"]]
out["bad_type"] = call("POST", "/api/services/discover", b"{}", "text/plain")
out["start"] = call("POST", "/api/services/discover", {"timeout_ms": 4000})
out["again"] = call("POST", "/api/services/discover", {})
out["jobs"] = [finished(out["start"][1])]
if out["again"][1]["id"] != out["start"][1]["id"]:
    out["jobs"].append(finished(out["again"][1]))
out["after"] = call("GET", "/api/devices")
print(json.dumps(out))
