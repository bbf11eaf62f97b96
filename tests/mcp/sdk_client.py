"""Drive Caxton's /mcp endpoint with the official MCP Python SDK (PyPI `mcp`).

Usage: python3 sdk_client.py URL TOKEN
Prints one JSON object describing what the SDK saw; the Rust test asserts on it.
"""
import asyncio
import json
import sys

import httpx2
from mcp import ClientSession, types
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError


async def main(url: str, token: str) -> dict:
    out: dict = {}
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx2.AsyncClient(headers=headers, timeout=30) as http:
        async with streamable_http_client(url, http_client=http) as streams:
            read, write = streams[0], streams[1]
            async with ClientSession(read, write) as session:
                init = await session.initialize()
                out["protocol_version"] = init.protocol_version
                out["server_name"] = init.server_info.name
                out["tools_capability"] = init.capabilities.tools is not None
                await session.send_ping()
                out["ping"] = True

                names, pages, cursor = [], 0, None
                while True:
                    params = types.PaginatedRequestParams(cursor=cursor) if cursor else None
                    result = await session.list_tools(params=params)
                    pages += 1
                    names.extend(t.name for t in result.tools)
                    cursor = result.next_cursor
                    if not cursor:
                        break
                out["tools"] = names
                out["pages"] = pages

                stats = await session.call_tool(
                    "csv_stats", {"csv": "region,total\nnorth,10\nsouth,32"}
                )
                out["stats_is_error"] = stats.is_error
                out["stats_text"] = stats.content[0].text

                bad = await session.call_tool("csv_stats", {"csv": 42})
                out["bad_args_is_error"] = bad.is_error
                out["bad_args_text"] = bad.content[0].text

                try:
                    await session.call_tool("no_such_tool", {})
                    out["unknown_tool_error"] = None
                except MCPError as e:
                    out["unknown_tool_error"] = {"code": e.error.code, "message": e.error.message}
    return out


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(sys.argv[1], sys.argv[2]))))
