"""`dockyard logs NAME`: a version's container output, from the project's log-stream route.

It reads what 2.x's `get_session_log_stream` reads (`…/agents/{name}/versions/{v}/sessions/{id}:logstream`,
Server-Sent Events of `{timestamp, stream, message}`), so it works against Foundry as against dockyard.
That route follows the container and never ends by itself; without --follow the command stops once the
stream has been quiet for --idle seconds (the backlog arrives at once, so that is "the logs so far").
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import typer

from dockyard.cli.connect import HomeOption, Target, TargetOption, api_errors, project_client

# dockyard's name for a version's own sandbox (the container that made it active); Foundry names sessions.
VERSION_SANDBOX = "default"


@dataclass(frozen=True)
class LogLine:
    timestamp: str | None
    stream: str
    message: str

    def to_json(self) -> dict[str, str | None]:
        return {"timestamp": self.timestamp, "stream": self.stream, "message": self.message}


def parse_events(chunks: Iterable[bytes]) -> Iterator[LogLine]:
    """SSE frames to log lines. `data` is documented as non-contractual: JSON is read, anything else kept as text."""
    buffer = b""
    for chunk in chunks:
        buffer += chunk
        while True:
            cut = min((i for i in (buffer.find(b"\n\n"), buffer.find(b"\r\n\r\n")) if i >= 0), default=-1)
            if cut < 0:
                break
            frame, buffer = buffer[:cut], buffer[cut:].lstrip(b"\r\n")
            line = _frame(frame.decode(errors="replace"))
            if line is not None:
                yield line


def _frame(frame: str) -> LogLine | None:
    data = "\n".join(line[5:].lstrip() for line in frame.splitlines() if line.startswith("data:"))
    if not data:
        return None
    try:
        parsed = json.loads(data)
    except ValueError:
        return LogLine(None, "stdout", data)
    if not isinstance(parsed, dict):
        return LogLine(None, "stdout", data)
    return LogLine(parsed.get("timestamp"), str(parsed.get("stream", "stdout")), str(parsed.get("message", "")))


def read_logs(client, agent_name: str, version: str, session: str = VERSION_SANDBOX, *,  # type: ignore[no-untyped-def]
              follow: bool = False, idle_seconds: float = 2.0) -> Iterator[LogLine]:
    """The log lines of one sandbox; without `follow`, until the stream is quiet for `idle_seconds`."""
    from azure.core.exceptions import ServiceResponseError

    options = {} if follow else {"read_timeout": idle_seconds}
    chunks = client.agents.get_session_log_stream(agent_name=agent_name, agent_version=version, session_id=session,
                                                  **options)
    try:
        yield from parse_events(chunks)
    except ServiceResponseError:
        return  # quiet for idle_seconds: the backlog is done
    finally:
        close = getattr(chunks, "close", None)
        if close:
            close()


def latest_version(client, agent_name: str) -> str:  # type: ignore[no-untyped-def]
    return str(client.agents.get(agent_name=agent_name).versions["latest"]["version"])


def last_used_session(client, agent_name: str, version: str) -> str:  # type: ignore[no-untyped-def]
    """The version's session that served a request last (where `dockyard invoke` went), else its own sandbox."""
    sessions = [s for s in client.agents.list_sessions(agent_name=agent_name)
                if s.version_indicator.agent_version == version]
    if not sessions:
        return VERSION_SANDBOX
    return max(sessions, key=lambda s: s.last_accessed_at).agent_session_id


def logs_command(
    name: str = typer.Argument(..., help="The agent's name."),
    version: str = typer.Option(None, "--version", "-V", help="Which version (default: the latest)."),
    session: str = typer.Option(
        None, "--session", "-s",
        help="Which sandbox: a session id (as `dockyard invoke` prints it), or `default`, the version's own "
             "(default: the session that served the version's last request, else `default`).",
    ),
    follow: bool = typer.Option(False, "--follow", "-f", help="Keep streaming new lines until Ctrl-C."),
    idle: float = typer.Option(2.0, "--idle", help="Without --follow, stop after this many quiet seconds."),
    json_output: bool = typer.Option(False, "--json", help="One JSON object per line: timestamp, stream, message."),
    target: Target = TargetOption,
    home: Path = HomeOption,
) -> None:
    """Print a version's container output (stdout and stderr), as the log stream serves it.

    Exit codes: 0 done; 1 the service failed; 3 target unreachable or credential refused; 4 no such agent,
    version or sandbox.
    """
    client = project_client(target, home)
    with api_errors(f"logs of {name}"):
        version = version or latest_version(client, name)
        session = session or last_used_session(client, name, version)
        try:
            for line in read_logs(client, name, version, session, follow=follow, idle_seconds=idle):
                if json_output:
                    typer.echo(json.dumps(line.to_json()))
                elif line.stream == "status":
                    typer.echo(f"[{line.message}]", err=True)
                else:
                    typer.echo(line.message)
        except KeyboardInterrupt:
            pass

