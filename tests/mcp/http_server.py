#!/usr/bin/env python3
"""Streamable-HTTP upstreams for Maestra's `url` tool servers, on 127.0.0.1 port 0 (the port
is printed on stdout, one line, once the socket listens).

    http_server.py serve      the official SDK's MCPServer (streamable HTTP, stateful, served
                              by uvicorn), behind a check that every request carries
                              `Authorization` equal to $MCP_TEST_AUTHORIZATION: anything else
                              is answered 401 with a body that quotes what was sent. Its tool
                              `echo` returns its text and the Authorization header it got,
                              whole and without its scheme: a canary for Maestra's scrubbing;
                              `sleep` answers after the seconds it is given.
    http_server.py redirect   answers every request 302 to another host
    http_server.py garbage    answers every request 200 `application/json` that is not JSON
    http_server.py flood      answers every request with an event stream whose first event
                              never ends (32 MiB of one line)
"""

import asyncio
import os
import socket
import sys

import uvicorn
from mcp.server.mcpserver import Context, MCPServer

FLOOD_BYTES = 32 * 1024 * 1024
CHUNK = 64 * 1024


def echo_server():
    mcp = MCPServer("remote-echo")

    @mcp.tool()
    def echo(text: str, ctx: Context) -> str:
        """Echoes its text, and the credential the request carried."""
        auth = (ctx.headers or {}).get("authorization", "")
        return f"echo: {text}; authorization: {auth}; token: {auth.partition(' ')[2]}"

    @mcp.tool()
    async def sleep(seconds: float) -> str:
        """Answers after `seconds`: a server that hangs."""
        await asyncio.sleep(seconds)
        return "woke"

    return mcp.streamable_http_app()


class RequireAuthorization:
    """ASGI middleware: a request without the expected Authorization is answered 401."""

    def __init__(self, app, expected: str):
        self.app = app
        self.expected = expected.encode()

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            got = dict(scope["headers"]).get(b"authorization", b"")
            if got != self.expected:
                await send({"type": "http.response.start", "status": 401,
                            "headers": [(b"content-type", b"text/plain")]})
                await send({"type": "http.response.body", "body": b"unauthorized: got " + got})
                return
        await self.app(scope, receive, send)


def broken(mode: str):
    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        if mode == "redirect":
            await send({"type": "http.response.start", "status": 302,
                        "headers": [(b"location", b"http://198.51.100.7/mcp"), (b"content-length", b"0")]})
            await send({"type": "http.response.body", "body": b""})
        elif mode == "garbage":
            body = b"<html>this is not JSON-RPC</html>"
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-type", b"application/json"),
                                    (b"content-length", str(len(body)).encode())]})
            await send({"type": "http.response.body", "body": body})
        else:
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-type", b"text/event-stream")]})
            await send({"type": "http.response.body", "body": b"data: ", "more_body": True})
            chunk = b"x" * CHUNK
            for _ in range(FLOOD_BYTES // CHUNK):
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b"\n\n"})

    return app


def main():
    mode = sys.argv[1] if len(sys.argv) > 1 else ""
    if mode == "serve":
        app = RequireAuthorization(echo_server(), os.environ["MCP_TEST_AUTHORIZATION"])
    elif mode in ("redirect", "garbage", "flood"):
        app = broken(mode)
    else:
        sys.exit(__doc__)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    # Listening before the port is told: a connection that comes first waits in the backlog.
    sock.listen(64)
    print(sock.getsockname()[1], flush=True)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="auto"))
    asyncio.run(server.serve(sockets=[sock]))


if __name__ == "__main__":
    main()
