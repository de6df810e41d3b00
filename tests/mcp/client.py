#!/usr/bin/env python3
"""MCP test client built only on the official SDK's public API (`mcp` 2.3.0).

    client.py [--timeout S] [--mode auto|legacy|2026-07-28] --http URL [--header NAME=VALUE]...
    client.py [--timeout S] [--mode ...] [--env K=V]... --stdio CMD [ARGS...]

Reads a JSON list of steps on stdin, each {"op": "list"} or
{"op": "call", "name": ..., "arguments": {...}}, runs them on one session and
prints one JSON document:

    {"protocol_version": ..., "server_name": ..., "results": [...]}

list -> {"tools": [{"name", "description", "inputSchema"}, ...]}
call -> {"is_error": bool, "content": [text, ...], "structured": ...}
        | {"rpc_error": {"code": int, "message": str}}   (JSON-RPC error / MCPError)
        | {"client_error": str}   (SDK rejected the result, e.g. output-schema mismatch)
any  -> {"timeout": true}         (step exceeded --timeout; later steps still run)

Exit 0 when every step produced a result, 1 on a bad script/--header/--env,
2 on other usage errors (argparse), 3 when connecting or the transport failed
(message on stderr, nothing on stdout).
Note the SDK turns a non-2xx HTTP answer without a JSON-RPC body into an
rpc_error (-32603, or -32601/-32600 for 404), so an HTTP-level rejection by a
gateway shows up per step, not as exit 3.
"""

import argparse
import json
import math
import sys
from contextlib import AsyncExitStack

import anyio
import httpx2  # the SDK's own HTTP dependency; its transport takes an httpx2.AsyncClient
from mcp import Client, MCPError, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp_types.version import MODERN_PROTOCOL_VERSIONS
from pydantic import ValidationError


def pairs(values: list[str], flag: str) -> dict[str, str]:
    out = {}
    for v in values:
        name, sep, value = v.partition("=")
        if not sep or not name:
            sys.exit(f"{flag} expects NAME=VALUE, got {v!r}")
        out[name] = value
    return out


def content_to_text(block) -> object:
    # Text blocks are what tests compare; anything else is kept whole so nothing is silently lost.
    return block.text if block.type == "text" else block.model_dump(mode="json", by_alias=True, exclude_none=True)


async def run_step(client: Client, step: dict) -> dict:
    if step["op"] == "list":
        # Bypass the SDK's response cache so every list step really reaches the server/gateway.
        tools, cursor = [], None
        while True:
            page = await client.list_tools(cursor=cursor, cache_mode="bypass")
            tools += [{"name": t.name, "description": t.description, "inputSchema": t.input_schema} for t in page.tools]
            if not (cursor := page.next_cursor):
                return {"tools": tools}
    try:
        r = await client.call_tool(step["name"], step.get("arguments") or {})
    except MCPError as e:
        return {"rpc_error": {"code": e.error.code, "message": e.error.message}}
    except (RuntimeError, ValidationError) as e:
        # Raised client-side: e.g. structured content that no longer matches the tool's
        # outputSchema (something a redacting gateway could cause) or a malformed result.
        return {"client_error": str(e)}
    return {"is_error": bool(r.is_error), "content": [content_to_text(b) for b in r.content], "structured": r.structured_content}


async def main(args, steps) -> dict:
    async with AsyncExitStack() as stack:
        if args.http:
            # trust_env=False: tests talk to loopback gateways; an inherited HTTP(S)_PROXY must not reroute us.
            http = await stack.enter_async_context(
                httpx2.AsyncClient(headers=pairs(args.header, "--header"), trust_env=False,
                                   timeout=httpx2.Timeout(30, read=300))
            )
            server = streamable_http_client(args.http, http_client=http)
        else:
            # The SDK passes only a minimal safe env (PATH, HOME, ...) to the child; --env adds to it.
            server = StdioServerParameters(command=args.stdio[0], args=args.stdio[1:], env=pairs(args.env, "--env") or None)
        client = Client(server, mode=args.mode)
        # The connect deadline must enclose the whole `async with`: the Client opens task groups
        # that outlive __aenter__, so a scope around __aenter__ alone would exit out of order.
        with anyio.CancelScope(deadline=anyio.current_time() + args.timeout) as connect_scope:
            async with client:
                connect_scope.deadline = math.inf  # connected: from here only per-step deadlines apply
                results = []
                for step in steps:
                    try:
                        with anyio.fail_after(args.timeout):
                            results.append(await run_step(client, step))
                    except TimeoutError:
                        results.append({"timeout": True})
                info = client.server_info  # None on a 2026-07-28 connection whose server did not stamp serverInfo
                return {"protocol_version": client.protocol_version, "server_name": info.name if info else None,
                        "results": results}
        raise TimeoutError(f"connect did not finish within {args.timeout}s")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    target = ap.add_mutually_exclusive_group(required=True)
    target.add_argument("--http", metavar="URL")
    target.add_argument("--stdio", nargs=argparse.REMAINDER, metavar="CMD", help="must be last: command and its args")
    ap.add_argument("--header", action="append", default=[], metavar="NAME=VALUE")
    ap.add_argument("--env", action="append", default=[], metavar="K=V", help="extra env for the --stdio server")
    ap.add_argument("--timeout", type=float, default=30.0, help="seconds for connect and for each step")
    ap.add_argument("--mode", default="auto", choices=["auto", "legacy", *MODERN_PROTOCOL_VERSIONS],
                    help="SDK negotiation: auto (server/discover probe, falls back to initialize; SDK default), "
                         "legacy (initialize only), or a modern version such as 2026-07-28")
    args = ap.parse_args()
    if args.stdio is not None and not args.stdio:
        ap.error("--stdio needs a command")
    try:
        steps = json.load(sys.stdin)
        assert isinstance(steps, list) and all(
            isinstance(s, dict) and (s.get("op") == "list" or (s.get("op") == "call" and isinstance(s.get("name"), str)))
            for s in steps
        )
    except (ValueError, AssertionError):
        sys.exit('stdin must be a JSON list of {"op":"list"} / {"op":"call","name":...,"arguments":{...}}')
    try:
        doc = anyio.run(main, args, steps)
    except BaseException as e:  # noqa: BLE001 - anything escaping main is a connect/transport failure
        if isinstance(e, (KeyboardInterrupt, SystemExit)):
            raise
        # anyio task groups wrap (and re-wrap) the real cause; show the leaves so the log names it.
        def leaves(x):
            return [y for sub in x.exceptions for y in leaves(sub)] if isinstance(x, BaseExceptionGroup) else [x]
        print("transport failure: " + "; ".join(f"{type(x).__name__}: {x}" for x in leaves(e)), file=sys.stderr)
        sys.exit(3)
    json.dump(doc, sys.stdout, indent=1)
    print()
