"""What a running dockyard is configured with. Defaults are the embedded ones `make run` uses."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from dockyard.home import default_home

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8443
DEFAULT_PROJECT = "default"
# Where dockyard serves the managed-identity protocol (api/identity.py); clients find it in IDENTITY_ENDPOINT.
IDENTITY_PATH = "/msi/token"


def local_host(host: str) -> str:
    """The address a client on this machine should use for a server bound to `host`."""
    return "127.0.0.1" if host in ("0.0.0.0", "", "::") else host


def base_url(host: str, port: int) -> str:
    """The https URL of a dockyard bound to `host`:`port`, as a client on this machine reaches it. Here, not in
    server.py, so the CLI can work it out without importing the server's stack."""
    host = local_host(host)
    return f"https://[{host}]:{port}" if ":" in host else f"https://{host}:{port}"


@dataclass(frozen=True)
class Settings:
    home: Path = field(default_factory=default_home)
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    # Foundry answers CapabilityHostNotFound to accounts without one; `--no-capability-host` shows that.
    capability_host: bool = True
    projects: tuple[str, ...] = (DEFAULT_PROJECT,)
    token_lifetime_seconds: int = 3600
    # Control-plane requests are small JSON; anything bigger is refused with 413 before it is parsed.
    max_request_bytes: int = 1024 * 1024
    # Invocations carry conversations and inputs: larger, but still bounded.
    max_invocation_bytes: int = 16 * 1024 * 1024
    # Uploads to /openai/v1/files (OpenAI's limit is 512 MB); past it a 413 as soon as it passes.
    max_file_bytes: int = 512 * 1024 * 1024
    # The deployment vector stores embed with; `local-embeddings` is dockyard's own (dockyard.models.embeddings).
    embedding_deployment: str = "local-embeddings"
    invocation_timeout_seconds: float = 300.0
    # The Responses tool loop (dockyard.tools.loop): model calls per Response before it stops "incomplete".
    max_tool_rounds: int = 8
    # Its Responses (kept for previous_response_id, GET, input_items) are pruned once this old, as OpenAI
    # keeps responses 30 days; the reconciler's loop prunes every interval.
    tool_response_retention_seconds: float = 30 * 24 * 3600
    # How often dockyard.housekeeping's sweeps run (those Responses, expired vector stores and state items).
    housekeeping_interval_seconds: float = 300.0
    log_level: str = "info"
    # Container engine: None finds one (DOCKER_HOST, the usual sockets, or podman's service, started).
    engine: str | None = None
    containers: bool = True
    reconcile_interval_seconds: float = 2.0
    # llama.cpp's server with Gemma 3 270M, started and supervised by dockyard (the local-model extra).
    local_model: bool = True
    # What runs agents: "containers" (an engine), "process" (code-based versions as supervised processes,
    # no engine), or "auto" (containers when an engine answers, else processes).
    runtime: str = "auto"
    # The image containers run code-based versions on, instead of docker.io/library/python:3.X-slim.
    code_image: str | None = None
    # Traces (<home>/traces.db): spans older than this, then the oldest past the size, are pruned periodically.
    trace_retention_seconds: float = 7 * 24 * 3600
    trace_max_bytes: int = 256 * 1024 * 1024
    trace_prune_interval_seconds: float = 300.0
    # Admission control (dockyard.domain.admission): what live sandboxes' limits may add up to (a share of the
    # machine or an amount, or "none"), how many live sessions one agent may have, and what a session cold
    # start that does not fit does: "reject" (429 TooManySandboxes) or "evict" (release the longest-idle session).
    max_memory: str = "80%"
    max_cpu: str = "none"
    max_sessions_per_agent: int = 16
    on_full: str = "reject"
    # The code_interpreter tool's limits per run (dockyard.tools.code_interpreter): wall clock, memory
    # (a container's memory_limit overrides it), output kept (stdout+stderr), and the largest file written.
    code_interpreter_timeout_seconds: float = 30.0
    code_interpreter_memory_bytes: int = 512 * 1024 * 1024
    code_interpreter_output_bytes: int = 64 * 1024
    code_interpreter_file_bytes: int = 64 * 1024 * 1024
