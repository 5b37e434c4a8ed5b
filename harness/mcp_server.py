"""``harness mcp``: :class:`harness.mcp_service.ResearchService` over MCP's stdio transport, built
on the official ``mcp`` SDK's low-level server (the tool schemas are served exactly as
:mod:`tools.schemas` writes them).

Tool calls run in a worker thread so the server keeps answering (pings, other clients' reads)
while an experiment trains; a running experiment reports its elapsed seconds as progress
notifications when the client sent a progress token.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

import anyio
import anyio.to_thread
import mcp_types as types
from mcp.server.lowlevel import Server
from mcp.server.stdio import stdio_server

from .mcp_service import ResearchService, tool_schemas

SERVER_NAME = "autoresearch"
#: seconds between two progress notifications of a running experiment
PROGRESS_EVERY_S = 2.0

INSTRUCTIONS = ("Autonomous ML research on train.py: read program.md with read_file, then run every experiment "
                "through run_experiment (a unified diff of train.py); the harness commits, trains, scores, keeps or "
                "discards, and records. Never edit files or run train.py yourself.")


def build_server(service: ResearchService) -> Server:
    """An MCP :class:`Server` whose tools are ``service``'s."""

    async def list_tools(ctx, params) -> types.ListToolsResult:
        return types.ListToolsResult(tools=[
            types.Tool(name=t["name"], description=t["description"], input_schema=t["parameters"])
            for t in tool_schemas()])

    async def call_tool(ctx, params: types.CallToolRequestParams) -> types.CallToolResult:
        on_tick = _progress_reporter(ctx, service.cfg.time_budget_s) if params.name == "run_experiment" else None
        answer = await anyio.to_thread.run_sync(service.call, params.name, dict(params.arguments or {}), on_tick)
        return types.CallToolResult(content=[types.TextContent(text=answer.text)], is_error=answer.is_error)

    return Server(SERVER_NAME, instructions=INSTRUCTIONS, on_list_tools=list_tools, on_call_tool=call_tool)


def _progress_reporter(ctx, budget_s: float):
    """A tick callback for the worker thread that sends throttled progress notifications (a no-op
    when the client asked for none)."""
    last = [0.0]

    def tick(elapsed: float) -> None:
        now = time.monotonic()
        if now - last[0] < PROGRESS_EVERY_S:
            return
        last[0] = now
        try:
            anyio.from_thread.run(ctx.session.report_progress, float(elapsed), float(budget_s),
                                  f"training: {elapsed:.0f} s of {budget_s:.0f} s")
        except Exception:  # progress is best effort: a closed client must not fail the experiment
            pass

    return tick


def serve(path: Path, deadline: Optional[float] = None) -> None:
    """Serve the sandbox at ``path`` on stdin/stdout until the client closes the connection."""
    service = ResearchService(path, deadline)
    server = build_server(service)

    async def main() -> None:
        async with stdio_server() as (read_stream, write_stream):
            await server.run(read_stream, write_stream, server.create_initialization_options())

    anyio.run(main)
