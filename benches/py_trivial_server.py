"""The Python baseline for benches/mcp_latency.rs: a trivial MCP server on the official
Python SDK (mcp 2.x, `MCPServer`), served over stdio, with one tool `get_system_status`
that returns a small fixed dict (structured output, like flotilla's tool of that name).

    .venv-test/bin/python benches/py_trivial_server.py
"""

from __future__ import annotations

import os
import time
from typing import TypedDict

from mcp.server.mcpserver import MCPServer

STARTED = time.monotonic()


class SystemStatus(TypedDict):
    node: str
    pid: int
    health: str
    uptime_s: int
    queued: int
    running: int


server = MCPServer("py-trivial", version="0.0.0", log_level="WARNING")


@server.tool()
def get_system_status() -> SystemStatus:
    """Node summary: a small fixed dict."""
    return {
        "node": "bench",
        "pid": os.getpid(),
        "health": "ok",
        "uptime_s": int(time.monotonic() - STARTED),
        "queued": 0,
        "running": 0,
    }


if __name__ == "__main__":
    server.run("stdio")
