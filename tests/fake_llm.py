"""Loopback HTTP servers that speak the Anthropic Messages and OpenAI Chat Completions wire formats,
replaying scripted model turns, so tests drive the real ``anthropic`` and ``openai`` SDKs.

Only 127.0.0.1; every request (path, headers, raw body) is recorded for assertions. A script is a
list of replies, each a :class:`Reply` or a function ``(request_json) -> Reply``; when it runs out,
``default`` answers (a 400 "script exhausted" unless the test sets another, e.g. a 500 storm).
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Reply:
    status: int
    body: dict
    headers: dict = field(default_factory=dict)


@dataclass
class Request:
    path: str
    headers: dict
    body: bytes

    @property
    def json(self) -> dict:
        return json.loads(self.body)


class FakeLLMServer:
    """A scripted model server on 127.0.0.1 (a free port), running in a daemon thread.

    Use as a context manager; ``url`` is ``http://127.0.0.1:PORT``.
    """

    def __init__(self, script: list, default: Reply | None = None):
        self.script, self.requests = list(script), []
        self.default = default or Reply(400, {"error": {"type": "invalid_request_error", "message": "script exhausted"}},
                                        {"x-should-retry": "false"})
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's naming)
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                with server.lock:
                    server.requests.append(Request(self.path, {k.lower(): v for k, v in self.headers.items()}, body))
                    step = server.script.pop(0) if server.script else server.default
                reply = step(json.loads(body)) if callable(step) else step
                data = json.dumps(reply.body).encode()
                self.send_response(reply.status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                for k, v in reply.headers.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> "FakeLLMServer":
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


# --- Anthropic Messages ------------------------------------------------------------------------
def anthropic_turn(*blocks: dict, input_tokens: int = 1000, output_tokens: int = 50, cache_read: int = 0) -> Reply:
    stop = "tool_use" if any(b["type"] == "tool_use" for b in blocks) else "end_turn"
    return Reply(200, {"id": "msg_test", "type": "message", "role": "assistant", "model": "claude-test",
                       "content": list(blocks), "stop_reason": stop, "stop_sequence": None,
                       "usage": {"input_tokens": input_tokens, "output_tokens": output_tokens,
                                 "cache_creation_input_tokens": 0, "cache_read_input_tokens": cache_read}})


def tool_use(name: str, arguments: dict, call_id: str = "toolu_1") -> dict:
    return {"type": "tool_use", "id": call_id, "name": name, "input": arguments}


def text_block(text: str) -> dict:
    return {"type": "text", "text": text}


def anthropic_error(status: int, retry_after_ms: int = 5) -> Reply:
    kind = {429: "rate_limit_error", 500: "api_error", 529: "overloaded_error"}.get(status, "api_error")
    return Reply(status, {"type": "error", "error": {"type": kind, "message": f"scripted {status}"}},
                 {"retry-after-ms": str(retry_after_ms)})


# --- OpenAI Chat Completions -------------------------------------------------------------------
def openai_turn(tool_calls: list[tuple[str, str]] = (), content: str | None = None,
                prompt_tokens: int = 900, completion_tokens: int = 40) -> Reply:
    """``tool_calls``: ``(name, arguments_json_string)`` pairs (the string may be broken JSON)."""
    calls = [{"id": f"call_{i}", "type": "function", "function": {"name": n, "arguments": a}}
             for i, (n, a) in enumerate(tool_calls)]
    message = {"role": "assistant", "content": content}
    if calls:
        message["tool_calls"] = calls
    return Reply(200, {"id": "chatcmpl-test", "object": "chat.completion", "created": 0, "model": "test-model",
                       "choices": [{"index": 0, "message": message,
                                    "finish_reason": "tool_calls" if calls else "stop"}],
                       "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                                 "total_tokens": prompt_tokens + completion_tokens}})


def openai_error(status: int, retry_after_ms: int = 5) -> Reply:
    return Reply(status, {"error": {"message": f"scripted {status}", "type": "server_error", "code": None}},
                 {"retry-after-ms": str(retry_after_ms)})
