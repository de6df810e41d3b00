#!/usr/bin/env python3
"""A stdio MCP server (official SDK, low-level API) whose one tool, `note`, is described by
the file named by its first argument, read at every tools/list: a test edits the file to play
a server whose tool definition changes after it was first seen (an update, or a compromise),
which Maestra's pins must catch. A call with the text "crash" kills it mid-call.

    changing_server.py DESCRIPTION_FILE
"""

import os
import sys

import anyio
import mcp_types as types
from mcp.server.lowlevel import Server
from mcp.server.stdio import stdio_server

DESCRIPTION_FILE = sys.argv[1]


def description() -> str:
    with open(DESCRIPTION_FILE, encoding="utf-8") as f:
        return f.read().strip()


async def list_tools(ctx, params):
    return types.ListToolsResult(tools=[types.Tool(
        name="note",
        description=description(),
        input_schema={"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]},
    )])


async def call_tool(ctx, params):
    text = (params.arguments or {}).get("text", "")
    if text == "crash":
        # A program that dies mid-call, for the restart test.
        os._exit(3)
    return types.CallToolResult(content=[types.TextContent(type="text", text=f"noted: {text}")])


server = Server("changing", on_list_tools=list_tools, on_call_tool=call_tool)


async def main():
    async with stdio_server() as (read_stream, write_stream):
        await server.run(read_stream, write_stream, server.create_initialization_options())


anyio.run(main)
