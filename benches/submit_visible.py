"""Submit-to-visible latency: a workflow submitted by the Python MCP SDK through
`flotilla --mcp-stdio` (relaying to the engine a running TUI owns) until its name shows in
that TUI's Queue pane, read with tmux capture-pane.

    tmux new-session -d -s flotilla -x 80 -y 24 "target/release/flotilla --data-dir DIR"
    .venv-test/bin/python benches/submit_visible.py DIR target/release/flotilla [runs]
"""
import statistics
import subprocess
import sys
import time

import anyio
from mcp import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client


def visible(name: str) -> bool:
    out = subprocess.run(["tmux", "capture-pane", "-p", "-t", "flotilla"], capture_output=True, text=True).stdout
    return name in out


async def main(data_dir: str, binary: str, runs: int) -> None:
    params = StdioServerParameters(command=binary, args=["--mcp-stdio", "--data-dir", data_dir])
    ack, seen = [], []
    async with stdio_client(params) as (r, w):
        async with ClientSession(r, w) as s:
            await s.initialize()
            for i in range(runs):
                name = f"v{time.time_ns() % 10**5:05d}{i:03d}"
                t0 = time.perf_counter()
                res = await s.call_tool("submit_p2p_workflow", {
                    "name": name,
                    "tasks": [{"command": ["echo", "a"]}, {"command": ["echo", "b"]}, {"command": ["echo", "c"]}],
                })
                assert not res.is_error, res
                t1 = time.perf_counter()
                while not visible(name):
                    if time.perf_counter() - t0 > 5:
                        raise SystemExit(f"{name} not visible after 5 s")
                    time.sleep(0.002)
                t2 = time.perf_counter()
                ack.append((t1 - t0) * 1000)
                seen.append((t2 - t0) * 1000)
                await anyio.sleep(0.3)
    q = lambda v, p: sorted(v)[min(len(v) - 1, int(p * len(v)))]
    print(f"runs={runs}  ack p50 {statistics.median(ack):.1f} ms  visible p50 {statistics.median(seen):.1f} ms  "
          f"p90 {q(seen, 0.9):.1f} ms  max {max(seen):.1f} ms")


if __name__ == "__main__":
    anyio.run(main, sys.argv[1], sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else 20)
