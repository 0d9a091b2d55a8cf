"""A FAKE model vendor, for the two vendor behaviours no local server shows on demand.

Real models run in every other test (llama.cpp's server). This fake only reproduces what a cloud
vendor does to a client and llama.cpp cannot be made to do: answer 429 with Retry-After (OpenAI's
and Azure's rate limits), and drop the connection in the middle of a streamed answer. The body's
`model` chooses the behaviour:

- `rate-limited`: 429, `Retry-After: 7`, `x-ratelimit-remaining-requests: 0`, OpenAI's error body.
- `cut-stream`: 200 with a chunked event stream of two events, then the socket closes without the
  last chunk (what a vendor's load balancer or a crashed server does).
"""

from __future__ import annotations

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from support.process import free_port

RATE_LIMIT_BODY = {"error": {"message": "Rate limit reached for requests. Please try again in 7s.",
                             "type": "requests", "param": None, "code": "rate_limit_exceeded"}}
CHAT_EVENTS = [
    {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 1, "model": "fake",
     "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]},
    {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 1, "model": "fake",
     "choices": [{"index": 0, "delta": {"content": "Hello"}, "finish_reason": None}]},
]
RESPONSE = {"id": "resp_fake", "object": "response", "created_at": 1, "status": "in_progress", "model": "fake",
            "output": [], "parallel_tool_calls": True, "tool_choice": "auto", "tools": []}
RESPONSES_EVENTS = [
    {"type": "response.created", "sequence_number": 0, "response": RESPONSE},
    {"type": "response.in_progress", "sequence_number": 1, "response": RESPONSE},
]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers.get("content-length") or 0)) or b"{}")
        self.server.requests.append((self.path, dict(self.headers), body))  # type: ignore[attr-defined]
        if body.get("model") == "rate-limited":
            data = json.dumps(RATE_LIMIT_BODY).encode()
            self.send_response(429)
            self.send_header("content-type", "application/json")
            self.send_header("retry-after", "7")
            self.send_header("x-ratelimit-remaining-requests", "0")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            return
        if body.get("model") == "cut-stream":
            self.send_response(200)
            self.send_header("content-type", "text/event-stream")
            self.send_header("transfer-encoding", "chunked")
            self.end_headers()
            if self.path.endswith("/responses"):
                events = [f"event: {e['type']}\ndata: {json.dumps(e)}\n\n" for e in RESPONSES_EVENTS]
            else:
                events = [f"data: {json.dumps(e)}\n\n" for e in CHAT_EVENTS]
            for event in events:
                data = event.encode()
                self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                self.wfile.flush()
            # Gone, mid-answer: no terminating chunk.
            self.connection.shutdown(socket.SHUT_RDWR)
            self.close_connection = True
            return
        self.send_error(400, "the fake vendor knows only the models rate-limited and cut-stream")

    def log_message(self, *_args: object) -> None:
        pass


class FakeVendor:
    """The fake on a free loopback port, in a thread; `base_url` ends in /v1 like OpenAI's."""

    def __init__(self) -> None:
        self.port = free_port()
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), _Handler)
        self._server.requests = []  # type: ignore[attr-defined]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def requests(self) -> list[tuple[str, dict[str, str], dict]]:
        return self._server.requests  # type: ignore[attr-defined, no-any-return]

    def __enter__(self) -> FakeVendor:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
