#!/usr/bin/env python3
"""A stdio MCP server (official SDK, low-level API) with two tools on {"host", "port"}:

- `connect` opens a plain TCP connection with socket.create_connection, ignoring any proxy,
  and reports "connected" or "refused: ERRNO_NAME ...";
- `tunnel` asks the proxy in HTTPS_PROXY for a CONNECT tunnel (the standard library's
  http.client), sends GET / through it and reports "STATUS BODY", or "failed: ...".

tests/mcp_sandbox.rs runs it inside Maestra's network sandbox (where only the tunnel can
reach anything) and outside it (where the plain connection does).

    connect_server.py
"""

import errno
import http.client
import os
import socket
import urllib.parse

import anyio
import mcp_types as types
from mcp.server.lowlevel import Server
from mcp.server.stdio import stdio_server


SCHEMA = {
    "type": "object",
    "properties": {"host": {"type": "string"}, "port": {"type": "integer"}},
    "required": ["host", "port"],
}


async def list_tools(ctx, params):
    return types.ListToolsResult(tools=[
        types.Tool(name="connect", input_schema=SCHEMA,
                   description="Open a TCP connection directly, bypassing any proxy, and say whether it worked."),
        types.Tool(name="tunnel", input_schema=SCHEMA,
                   description="GET / from host:port through a CONNECT tunnel of the HTTPS_PROXY."),
    ])


def attempt(host: str, port: int) -> str:
    try:
        with socket.create_connection((host, port), timeout=10):
            return "connected"
    except OSError as e:
        name = errno.errorcode.get(e.errno, "no errno") if e.errno else type(e).__name__
        return f"refused: {name} {e}"


def tunnel(host: str, port: int) -> str:
    proxy = os.environ.get("HTTPS_PROXY")
    if not proxy:
        return "failed: no HTTPS_PROXY"
    proxy = urllib.parse.urlsplit(proxy)
    conn = http.client.HTTPConnection(proxy.hostname, proxy.port, timeout=30)
    try:
        conn.set_tunnel(host, port)
        conn.request("GET", "/")
        resp = conn.getresponse()
        return f"{resp.status} {resp.read().decode(errors='replace')}"
    except OSError as e:
        return f"failed: {e}"
    finally:
        conn.close()


async def call_tool(ctx, params):
    args = params.arguments or {}
    run = tunnel if params.name == "tunnel" else attempt
    text = await anyio.to_thread.run_sync(run, str(args.get("host", "")), int(args.get("port", 0)))
    return types.CallToolResult(content=[types.TextContent(type="text", text=text)])


server = Server("connect", on_list_tools=list_tools, on_call_tool=call_tool)


async def main():
    async with stdio_server() as (read_stream, write_stream):
        await server.run(read_stream, write_stream, server.create_initialization_options())


anyio.run(main)
