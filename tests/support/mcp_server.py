"""MCP servers for tests: a real one written with the official `mcp` SDK, and two hostile ones.

- `McpTestServer`: the SDK's `MCPServer` over streamable HTTP (uvicorn in a thread, a free port, path
  `/mcp`). Its tools have exact, checkable results: `add` (a + b), `echo` (the text back), `headers`
  (the request headers it was sent, as JSON: shows what a client passed on), `slow` (sleeps), `big`
  (a long text), `fail` (a tool error). `calls` records each call, so a test can tell whether a tool
  ran (an approval that was refused must not run it).
- `HangingServer`: accepts connections and never answers (a server that hangs).
- `GarbageServer`: answers every request 200 with bytes that are not MCP (a server that answers garbage).

Run one on its own for a container or another process: `python tests/support/mcp_server.py --port N
[--host 0.0.0.0]` (serves until killed; prints its URL first).
"""

from __future__ import annotations

import argparse
import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import uvicorn
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.transport_security import TransportSecuritySettings

try:
    from support.process import free_port
except ImportError:  # run as a script
    def free_port() -> int:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            return int(sock.getsockname()[1])

# What `headers` leaves out: they change on every call and say nothing about what a client passed on.
_TRANSPORT_HEADERS = {"content-length", "host", "accept-encoding", "connection", "mcp-session-id",
                      "mcp-protocol-version", "user-agent"}


def build_server(calls: list[dict[str, Any]] | None = None) -> MCPServer:
    """The test tools; each call is appended to `calls` (name and arguments) when it starts."""
    server = MCPServer("dockyard-test-tools", instructions="Tools with exact results, for dockyard's tests.")
    seen = calls if calls is not None else []

    @server.tool(description="Add two integers and return their sum.")
    def add(a: int, b: int) -> int:
        seen.append({"name": "add", "arguments": {"a": a, "b": b}})
        return a + b

    @server.tool(description="Return the text it was given, unchanged.")
    def echo(text: str) -> str:
        seen.append({"name": "echo", "arguments": {"text": text}})
        return text

    @server.tool(description="The HTTP request headers this call arrived with, as a JSON object.")
    def headers(ctx: Context) -> str:
        seen.append({"name": "headers", "arguments": {}})
        sent = ctx.headers or {}
        return json.dumps({k.lower(): v for k, v in sent.items() if k.lower() not in _TRANSPORT_HEADERS},
                          sort_keys=True)

    @server.tool(description="Wait the given number of seconds, then say so.")
    async def slow(seconds: float) -> str:
        import anyio

        seen.append({"name": "slow", "arguments": {"seconds": seconds}})
        await anyio.sleep(seconds)
        return f"waited {seconds:g} s"

    @server.tool(description="Return a text of the given number of characters.")
    def big(size: int) -> str:
        seen.append({"name": "big", "arguments": {"size": size}})
        return "x" * size

    @server.tool(description="Always fails.")
    def fail() -> str:
        seen.append({"name": "fail", "arguments": {}})
        raise ToolError("this tool always fails")

    return server


class _ThreadedUvicorn(uvicorn.Server):
    def install_signal_handlers(self) -> None:  # the test process keeps its own
        pass


@dataclass
class McpTestServer:
    """The SDK's server on a free port, in a thread of the test process."""

    host: str = "127.0.0.1"
    port: int = field(default_factory=free_port)
    calls: list[dict[str, Any]] = field(default_factory=list)
    _server: _ThreadedUvicorn | None = None
    _thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/mcp"

    def start(self) -> McpTestServer:
        security = None
        if self.host not in ("127.0.0.1", "localhost"):
            # Reached by another name (a container's view of the host): no DNS-rebinding host check.
            security = TransportSecuritySettings(enable_dns_rebinding_protection=False)
        app = build_server(self.calls).streamable_http_app(transport_security=security, host=self.host)
        config = uvicorn.Config(app, host=self.host, port=self.port, log_level="warning", lifespan="on")
        self._server = _ThreadedUvicorn(config)
        self._thread = threading.Thread(target=self._server.run, name=f"mcp-test-server-{self.port}", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 20
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError(f"the MCP test server did not start on {self.host}:{self.port}")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)


@contextmanager
def serve_mcp(host: str = "127.0.0.1") -> Iterator[McpTestServer]:
    server = McpTestServer(host=host).start()
    try:
        yield server
    finally:
        server.stop()


class HangingServer:
    """Accepts TCP connections and reads, but never answers: the client must give up on its own."""

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self._held: list[socket.socket] = []
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._accept, name="mcp-hanging-server", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/mcp"

    def start(self) -> HangingServer:
        self._thread.start()
        return self

    def _accept(self) -> None:
        self._listener.settimeout(0.2)
        while not self._stopped.is_set():
            try:
                connection, _ = self._listener.accept()
            except OSError:
                continue
            self._held.append(connection)

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join(timeout=5)
        for connection in self._held:
            connection.close()
        self._listener.close()


class _GarbageHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _answer(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        if length:
            self.rfile.read(length)
        body = b"\x00\xffthis is not JSON-RPC {{{"
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_DELETE = _answer

    def log_message(self, format: str, *args: Any) -> None:
        pass


class GarbageServer:
    """Answers every request 200 with bytes that are not MCP."""

    def __init__(self) -> None:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _GarbageHandler)
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, name="mcp-garbage-server", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/mcp"

    def start(self) -> GarbageServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def main() -> None:
    parser = argparse.ArgumentParser(description="Serve the MCP test tools over streamable HTTP.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    server = McpTestServer(host=args.host, port=args.port or free_port()).start()
    print(server.url, flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        server.stop()


if __name__ == "__main__":
    main()
