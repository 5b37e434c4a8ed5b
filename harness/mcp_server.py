"""``harness mcp``: :class:`harness.mcp_service.ResearchService` over MCP's stdio transport, built
on the official ``mcp`` SDK's low-level server (the tool schemas are served exactly as
:mod:`tools.schemas` writes them).

Tool calls run in a worker thread so the server keeps answering (pings, other clients' reads)
while an experiment trains; a running experiment reports its elapsed seconds as progress
notifications when the client sent a progress token.

``harness pause``/``resume``/``stop [--now]`` act on the server as on ``harness start``: a paused
server holds ``run_experiment`` calls, a stop answers that the run is over (``--now`` kills the run
in flight first). SIGTERM or SIGINT (an agent CLI closing its servers) stops the server cleanly:
an experiment in flight is killed with its whole process group and recorded as ``interrupted``
(git and ledger writes run to the end, since the signal only sets a flag the run checks), then
the server exits.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from pathlib import Path
from typing import Optional

import anyio
import anyio.to_thread
import mcp_types as types
from mcp.server.lowlevel import Server
from mcp.server.stdio import stdio_server

from .agent_files import SERVER as SERVER_NAME  # the name .mcp.json and .codex/config.toml register
from .mcp_service import ResearchService, tool_schemas

#: seconds between two progress notifications of a running experiment
PROGRESS_EVERY_S = 2.0

INSTRUCTIONS = ("Autonomous ML research on train.py: read program_mcp.md (or program.md with read_file), then run "
                "every experiment through run_experiment (edit train.py, or pass a unified diff of it); the harness commits, trains, "
                "scores, keeps or discards, and records. Never edit other files, run train.py or use git to commit "
                "or reset yourself.")


#: seconds left for the last answer to be written before a stopping server ends
EXIT_AFTER_ANSWER_S = 0.5


def build_server(service: ResearchService, exit_soon=lambda delay_s: None) -> Server:
    """An MCP :class:`Server` whose tools are ``service``'s. ``exit_soon(delay_s)`` is called, in
    the event loop, when a stopping service has recorded its last experiment."""

    async def list_tools(ctx, params) -> types.ListToolsResult:
        return types.ListToolsResult(tools=[
            types.Tool(name=t["name"], description=t["description"], input_schema=t["parameters"])
            for t in tool_schemas()])

    async def call_tool(ctx, params: types.CallToolRequestParams) -> types.CallToolResult:
        on_tick = _progress_reporter(ctx, service.cfg.time_budget_s) if params.name == "run_experiment" else None
        answer = await anyio.to_thread.run_sync(service.call, params.name, dict(params.arguments or {}), on_tick)
        if service.stopping.is_set() and not service.busy:
            exit_soon(EXIT_AFTER_ANSWER_S)  # the experiment is recorded; the answer goes out, then the server ends
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


def serve(path: Path, deadline: Optional[float] = None, on_interrupted: str = "record") -> None:
    """Serve the sandbox at ``path`` on stdin/stdout until the client closes the connection or a
    SIGTERM/SIGINT arrives (see the module docstring)."""
    service = ResearchService(path, deadline, on_interrupted=on_interrupted)
    service.start()
    loops: list[asyncio.AbstractEventLoop] = []  # the server's event loop once serving

    def exit_now() -> None:
        # the stdin reader thread may block on a pipe the client left open, and nothing waits for
        # it: every experiment is recorded and fsynced, so the process ends here
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)

    def exit_soon(delay_s: float) -> None:
        loops[0].call_later(delay_s, exit_now)

    def on_signal(signum, frame):
        service.stopping.set()
        if not service.busy:
            if loops:
                loops[0].call_soon_threadsafe(exit_now)
            else:
                os._exit(0)
        # else: the worker's tick sees the flag, kills the run and records it; call_tool then ends the server

    server = build_server(service, exit_soon)

    async def main() -> None:
        loops.append(asyncio.get_running_loop())
        async with stdio_server() as (read_stream, write_stream):
            await server.run(read_stream, write_stream, server.create_initialization_options())

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, on_signal)
    anyio.run(main)  # returns when the client closes stdin
    while service.busy:  # an experiment still in flight ends (at once when stopping) and is recorded
        time.sleep(0.1)
    if service.stopping.is_set():
        exit_now()
