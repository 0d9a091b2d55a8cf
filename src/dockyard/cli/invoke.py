"""`dockyard invoke NAME TEXT`: one call to an agent, the way Foundry's clients make it.

Responses agents are called with the openai client `AIProjectClient.get_openai_client(agent_name=…)` hands
out (the agent's own endpoint); the session and version go in the body as Foundry reads them
(`agent_session_id`, `agent_reference.version`). Invocations agents have no openai client, so they are
called on `…/agents/{name}/endpoint/protocols/invocations` through the project client's own pipeline (same
credential, same TLS). The protocol comes from the version's definition.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from dockyard.cli.connect import HomeOption, Target, TargetOption, api_errors, project_client
from dockyard.cli.output import EXIT_FAILED, EXIT_UNREACHABLE, fail, note, print_json

INVOCATIONS_API_VERSION = "v1"


def invoke_command(
    name: str = typer.Argument(..., help="The agent's name."),
    text: str = typer.Argument(..., help="What to send: the Responses input, or the Invocations message."),
    stream: bool = typer.Option(False, "--stream", help="Print the answer as it streams."),
    session: str = typer.Option(None, "--session", "-s", help="Continue (or start) this session (default: the "
                                "version's shared one on dockyard; a new one on Foundry)."),
    version: str = typer.Option(None, "--version", "-V", help="Call this version (default: the endpoint's choice)."),
    json_output: bool = typer.Option(False, "--json", help="Print the whole answer as JSON (streamed: one event "
                                     "per line)."),
    target: Target = TargetOption,
    home: Path = HomeOption,
) -> None:
    """Send TEXT to agent NAME and print its answer (the session it ran in goes to stderr).

    On the local dockyard, without --stream, the request is made without loading the Azure SDK or openai.

    Exit codes: 0 answered; 1 the agent or the platform failed (the error's code and message are shown);
    3 target unreachable or credential refused; 4 no such agent or version.
    """
    if target is Target.local and not stream:
        _invoke_local(name, text, session=session, version=version, json_output=json_output, home=home)
        return
    client = project_client(target, home)
    with api_errors(f"invoking {name}"):
        protocol = _protocol(client, name, version)
        if protocol == "invocations":
            _invoke_invocations(client, name, text, stream=stream, session=session, version=version,
                                json_output=json_output)
        else:
            _invoke_responses(client, name, text, stream=stream, session=session, version=version,
                              json_output=json_output)


def _invoke_local(name: str, text: str, *, session: str | None, version: str | None, json_output: bool,
                  home: Path | None) -> None:
    """The local dockyard without the SDK: the same requests the openai client (Responses) or the project client
    (Invocations) send, made with the standard library (see `rest`), so the answer is not behind 1.3-2 s of
    imports. --stream still goes through the SDK and openai."""
    import urllib.parse

    from dockyard.cli.connect import local_exports
    from dockyard.cli.rest import LocalProject

    project = LocalProject(local_exports(home))
    agent = urllib.parse.quote(name, safe="")
    what = f"invoking {name}"
    details = (project.get(f"/agents/{agent}/versions/{urllib.parse.quote(version, safe='')}", what) if version
               else project.get(f"/agents/{agent}", what)["versions"]["latest"])
    if _definition_protocol(details["definition"]) == "invocations":
        if version:
            note("--version: the Invocations endpoint picks the version itself; pin one with a session created "
                 "for it.")
        params = {"agent_session_id": session} if session else {}
        answer, headers = project.post(f"/agents/{agent}/endpoint/protocols/invocations", {"message": text}, what,
                                       **params)
        body = answer if isinstance(answer, str) else json.dumps(answer)
        typer.echo(body if json_output else _pretty(body))
        if headers.get("x-agent-session-id"):
            note(f"session: {headers['x-agent-session-id']}")
        return
    request: dict[str, Any] = {"input": text}
    if session:
        request["agent_session_id"] = session
    if version:
        request["agent_reference"] = {"type": "agent_reference", "name": name, "version": version}
    response, _ = project.post(f"/agents/{agent}/endpoint/protocols/openai/responses", request, what)
    _session_note(response)
    if json_output:
        print_json(response)
        return
    if response.get("status") == "failed":
        error = response.get("error") or {}
        fail(f"{name} failed: {error.get('code', 'Failed')}: {error.get('message', '')}", EXIT_FAILED)
    typer.echo(_output_text(response))


def _output_text(response: dict[str, Any]) -> str:
    """What the openai SDK's `Response.output_text` gives: every output_text part of every message, joined."""
    return "".join(part.get("text", "") for item in response.get("output") or [] if item.get("type") == "message"
                   for part in item.get("content") or [] if part.get("type") == "output_text")


def _protocol(client, name: str, version: str | None) -> str:  # type: ignore[no-untyped-def]
    details = (client.agents.get_version(agent_name=name, agent_version=version) if version
               else client.agents.get(agent_name=name).versions["latest"])
    return _definition_protocol(details["definition"])


def _definition_protocol(definition: Any) -> str:
    records = definition.get("protocol_versions") or definition.get("container_protocol_versions") or []
    return str(records[0]["protocol"]) if records else "responses"


def _invoke_responses(client, name: str, text: str, *, stream: bool, session: str | None,  # type: ignore[no-untyped-def]
                      version: str | None, json_output: bool) -> None:
    import openai

    extra: dict[str, Any] = {}
    if session:
        extra["agent_session_id"] = session
    if version:
        extra["agent_reference"] = {"type": "agent_reference", "name": name, "version": version}
    responses = client.get_openai_client(agent_name=name).responses
    try:
        if not stream:
            answer = responses.create(input=text, extra_body=extra or None)
            _session_note(getattr(answer, "model_extra", None) or {})
            if json_output:
                print_json(answer.model_dump(mode="json"))
            else:
                typer.echo(answer.output_text)
            return
        completed: dict[str, Any] = {}
        for event in responses.create(input=text, stream=True, extra_body=extra or None):
            if json_output:
                typer.echo(json.dumps(event.model_dump(mode="json")))
            elif event.type == "response.output_text.delta":
                typer.echo(event.delta, nl=False)
            elif event.type in ("response.completed", "response.failed", "response.incomplete"):
                completed = event.response.model_dump(mode="json")
        if not json_output:
            typer.echo("")
        _session_note(completed)
        if completed.get("status") == "failed":
            error = completed.get("error") or {}
            fail(f"{name} failed: {error.get('code', 'Failed')}: {error.get('message', '')}", EXIT_FAILED)
    except openai.APIConnectionError as exc:
        fail(f"invoking {name}: could not reach the agent endpoint: {exc}", EXIT_UNREACHABLE)
    except openai.APIStatusError as exc:
        fail(f"invoking {name}: {_openai_error(exc)}",
             EXIT_UNREACHABLE if exc.status_code in (401, 403) else 4 if exc.status_code == 404 else EXIT_FAILED)


def _invoke_invocations(client, name: str, text: str, *, stream: bool, session: str | None,  # type: ignore[no-untyped-def]
                        version: str | None, json_output: bool) -> None:
    from azure.core.rest import HttpRequest

    if version:
        note("--version: the Invocations endpoint picks the version itself; pin one with a session created for it.")
    params = {"api-version": INVOCATIONS_API_VERSION}
    if session:
        params["agent_session_id"] = session
    body: dict[str, Any] = {"message": text}
    if stream:
        body["stream"] = True
    # A relative URL: send_request puts the project endpoint in front, as for the SDK's own calls.
    request = HttpRequest("POST", f"/agents/{name}/endpoint/protocols/invocations", params=params, json=body)
    response = client.send_request(request, stream=stream)
    if response.status_code >= 400:
        response.read()
        fail(f"invoking {name}: HTTP {response.status_code}: {_azure_error(response.text())}",
             EXIT_UNREACHABLE if response.status_code in (401, 403) else 4 if response.status_code == 404
             else EXIT_FAILED)
    served = response.headers.get("x-agent-session-id")
    if stream:
        for chunk in response.iter_bytes():
            typer.echo(chunk.decode(errors="replace"), nl=False)
        typer.echo("")
    else:
        typer.echo(response.text() if json_output else _pretty(response.text()))
    if served:
        note(f"session: {served}")


def _session_note(response: dict[str, Any]) -> None:
    session = response.get("agent_session_id")
    if session:
        note(f"session: {session}")


def _openai_error(exc: Any) -> str:
    body = exc.body if isinstance(getattr(exc, "body", None), dict) else {}
    error = body.get("error", body) if isinstance(body, dict) else {}
    if isinstance(error, dict) and (error.get("code") or error.get("message")):
        return f"{error.get('code') or exc.status_code}: {error.get('message', '')}"
    return str(exc)


def _azure_error(text: str) -> str:
    try:
        error = json.loads(text).get("error", {})
        return f"{error.get('code')}: {error.get('message')}"
    except (ValueError, AttributeError):
        return text[:500]


def _pretty(text: str) -> str:
    """A JSON answer's `reply` when it has one (the scaffold's shape), else the body as it came."""
    try:
        data = json.loads(text)
    except ValueError:
        return text
    return str(data["reply"]) if isinstance(data, dict) and "reply" in data else text
