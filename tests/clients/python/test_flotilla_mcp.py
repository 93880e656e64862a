"""Flotilla's MCP stdio face, driven by the official Python MCP SDK (2.x).

The binary comes from env FLOTILLA_BIN; every test spawns it with
``--mcp-stdio --data-dir <fresh tmp dir>``. Async tests run on anyio's pytest
plugin (shipped with anyio, a dependency of mcp), on the asyncio backend.
"""

from __future__ import annotations

import json
import os
import time
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, AsyncIterator

import anyio
import pytest

from mcp import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client

pytestmark = pytest.mark.anyio

EXPECTED_TOOLS = {
    "submit_p2p_workflow",
    "get_workflow_status",
    "cancel_workflow",
    "list_workflows",
    "get_system_status",
    "get_service_health",
    "get_recent_logs",
    "search_logs",
    "detect_hardware",
    "set_task_priority",
    "get_task_output",
}

WORKFLOW_STATUSES = {"queued", "running", "completed", "failed", "cancelled"}
TERMINAL = {"completed", "failed", "cancelled"}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def flotilla_bin() -> str:
    path = os.environ.get("FLOTILLA_BIN")
    if not path:
        pytest.fail("set FLOTILLA_BIN to the flotilla binary (e.g. target/debug/flotilla)")
    path = os.path.abspath(path)
    if not os.access(path, os.X_OK):
        pytest.fail(f"FLOTILLA_BIN={path} is not an executable file")
    return path


@asynccontextmanager
async def flotilla(data_dir: Path) -> AsyncIterator[ClientSession]:
    """An initialized ClientSession on a fresh `flotilla --mcp-stdio` process."""
    params = StdioServerParameters(
        command=flotilla_bin(),
        args=["--mcp-stdio", "--no-p2p", "--data-dir", str(data_dir)],
        env={
            # Keep the engine's log (stderr) short enough to read on failure.
            "FLOTILLA_LOG": os.environ.get("FLOTILLA_LOG", "warn"),
            # No user config file: the defaults plus the flags above only.
            "XDG_CONFIG_HOME": str(data_dir / "xdg-config"),
        },
    )
    async with stdio_client(params) as (read, write):
        async with ClientSession(read, write, read_timeout_seconds=30) as session:
            init = await session.initialize()
            assert init.server_info.name == "flotilla"
            assert init.capabilities.tools is not None
            yield session


def text_of(result: Any) -> str:
    return "\n".join(getattr(block, "text", "") for block in result.content)


async def call_ok(session: ClientSession, name: str, args: dict[str, Any]) -> dict[str, Any]:
    """Call a tool that must succeed; return its structuredContent (checked against the text)."""
    result = await session.call_tool(name, args)
    assert not result.is_error, f"{name}({args}) failed: {text_of(result)}"
    sc = result.structured_content
    assert isinstance(sc, dict), f"{name}: no structuredContent object: {result!r}"
    # The text block carries the same JSON, for clients that ignore structured output.
    assert json.loads(text_of(result)) == sc
    return sc


async def wait_status(
    session: ClientSession, workflow_id: str, want: set[str], timeout: float = 30.0
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        st = await call_ok(session, "get_workflow_status", {"workflow_id": workflow_id})
        assert st["status"] in WORKFLOW_STATUSES, st
        if st["status"] in want:
            return st
        if st["status"] in TERMINAL or time.monotonic() > deadline:
            pytest.fail(f"workflow {workflow_id} is {st['status']}, wanted {sorted(want)}: {st}")
        await anyio.sleep(0.2)


async def test_list_tools(tmp_path: Path) -> None:
    async with flotilla(tmp_path) as s:
        listed = await s.list_tools()
    # Asserted outside the session so a failure reads as itself, not as a task-group error.
    tools = {t.name: t for t in listed.tools}
    missing = EXPECTED_TOOLS - tools.keys()
    assert not missing, f"tools missing from tools/list: {sorted(missing)}"

    for name in sorted(EXPECTED_TOOLS):
        assert tools[name].input_schema.get("type") == "object", name
    no_output_schema = sorted(n for n in EXPECTED_TOOLS if not tools[n].output_schema)
    assert not no_output_schema, f"tools without an outputSchema: {no_output_schema}"
    for name in sorted(EXPECTED_TOOLS):
        assert tools[name].output_schema.get("type") == "object", name

    cancel = tools["cancel_workflow"].annotations
    assert cancel is not None, "cancel_workflow has no annotations"
    assert cancel.destructive_hint is True
    assert cancel.read_only_hint is False

    status = tools["get_system_status"].annotations
    assert status is not None, "get_system_status has no annotations"
    assert status.read_only_hint is True


async def test_three_task_workflow_completes(tmp_path: Path) -> None:
    async with flotilla(tmp_path) as s:
        sub = await call_ok(
            s,
            "submit_p2p_workflow",
            {
                "name": "py-sdk-three",
                "tasks": [
                    {"command": ["sh", "-c", "echo one"]},
                    {"command": ["echo", "two"], "env": {"FLOTILLA_TEST": "1"}},
                    {"command": ["true"], "timeout_s": 20},
                ],
            },
        )
        assert isinstance(sub["workflow_id"], str) and sub["workflow_id"]
        assert sub["tasks"] == 3

        st = await wait_status(s, sub["workflow_id"], {"completed"})
        assert st["workflow_id"] == sub["workflow_id"]
        assert st["status"] == "completed"
        assert st["total"] == 3
        assert st["completed"] == 3
        assert st["failed"] == 0
        assert isinstance(st["tasks"], list) and len(st["tasks"]) == 3
        commands = [t["command"] for t in st["tasks"]]
        assert commands == [["sh", "-c", "echo one"], ["echo", "two"], ["true"]]
        for task in st["tasks"]:
            assert isinstance(task["task_id"], str) and task["task_id"].startswith(sub["workflow_id"])
            assert task["exit_code"] == 0, task

        out = await call_ok(s, "get_task_output", {"task_id": st["tasks"][0]["task_id"]})
        assert "one" in json.dumps(out)

        listed = await call_ok(s, "list_workflows", {"status": "completed"})
        assert sub["workflow_id"] in json.dumps(listed)


async def test_cancel_needs_confirm(tmp_path: Path) -> None:
    async with flotilla(tmp_path) as s:
        sub = await call_ok(
            s,
            "submit_p2p_workflow",
            {"name": "py-sdk-sleep", "tasks": [{"command": ["sleep", "30"]}]},
        )
        wf = sub["workflow_id"]

        refused = await s.call_tool("cancel_workflow", {"workflow_id": wf})
        assert refused.is_error, f"cancel without confirm was accepted: {refused!r}"
        assert "confirm=true" in text_of(refused)

        st = await call_ok(s, "get_workflow_status", {"workflow_id": wf})
        assert st["status"] in {"queued", "running"}, st

        done = await call_ok(s, "cancel_workflow", {"workflow_id": wf, "confirm": True})
        assert done["workflow_id"] == wf

        st = await wait_status(s, wf, {"cancelled"}, timeout=15)
        assert st["status"] == "cancelled"
        assert st["completed"] == 0


async def test_bad_task_shape_names_the_task(tmp_path: Path) -> None:
    async with flotilla(tmp_path) as s:
        result = await s.call_tool(
            "submit_p2p_workflow", {"name": "py-sdk-bad", "tasks": [{"model": "bert"}]}
        )
        assert result.is_error, f"a task without a command was accepted: {result!r}"
        assert "tasks[0]" in text_of(result), text_of(result)
