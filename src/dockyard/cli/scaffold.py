"""`dockyard init NAME`: a new hosted-agent project that builds, deploys and answers before anything is changed.

The files come from package data (`dockyard/project/templates/`): what every project has (`common/`) and what
differs per protocol (`responses/`, `invocations/`). `--code` writes a code-based agent instead: no
Containerfile, an agent.yaml with `codeConfiguration` and an `.agentignore` (`code/` replaces those files).
`{{key}}` placeholders are filled in here; nothing else in the templates is interpreted, so a Containerfile's
`${BASE_IMAGE}` stays as it is.
"""

from __future__ import annotations

import json
import sys
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path

import typer

from dockyard.cli.output import EXIT_USAGE, fail, stdout

DEFAULT_BASE_IMAGE = "docker.io/library/python:3.11-slim-bookworm"

PROTOCOLS = {
    # protocol: (adapter package, version dockyard and Foundry serve for it, the route it serves, sample reply)
    "responses": ("azure-ai-agentserver-responses==2.3.0", "2.0.0", "POST /responses", "echo: hello"),
    "invocations": ("azure-ai-agentserver-invocations==1.2.0", "2.0.0", "POST /invocations",
                    '{"reply": "echo: hello"}'),
}

# Package data cannot ship dotfiles reliably, so they are stored without the dot.
_RENAMED = {"dockerignore": ".dockerignore", "agentignore": ".agentignore"}
# What a code-based project does not have (no image to build) or has in its own version (code/).
_IMAGE_ONLY = {"Containerfile", "dockerignore", "agent.yaml", "README.md"}
# Runtimes Foundry offers for code (domain.code_runtimes has the list); the default matches this Python.
_DEFAULT_RUNTIME = f"python_{sys.version_info.major}_{sys.version_info.minor}"


def init_command(
    name: str = typer.Argument(..., help="The agent's name: letters, digits and hyphens, a letter first."),
    protocol: str = typer.Option("responses", "--protocol", "-p", help="responses or invocations."),
    base_image: str = typer.Option(
        None, "--base-image", help=f"Image the Containerfile builds FROM (default: {DEFAULT_BASE_IMAGE})."
    ),
    registry: str = typer.Option(None, "--registry", help="Where `dockyard build` pushes (written to dockyard.yaml)."),
    directory: Path = typer.Option(None, "--dir", help="Folder to create (default: ./NAME)."),
    code: bool = typer.Option(False, "--code", help="A code-based agent: no Containerfile; `dockyard deploy` "
                              "uploads the folder and the service installs requirements.txt (remote_build)."),
    runtime: str = typer.Option(None, "--runtime", help="With --code: python_3_11 … python_3_14 (default: this "
                                "machine's Python, if Foundry offers it, else python_3_12)."),
) -> None:
    """Create a hosted-agent project: app, pinned requirements, Containerfile, agent.yaml, tests, README.

    The agent echoes what it is sent, so it works offline; agent.py is where a model goes. Then:
    cd NAME && dockyard build && dockyard deploy && dockyard invoke NAME "hello".
    With --code there is nothing to build: cd NAME && dockyard deploy && dockyard invoke NAME "hello".

    Exit codes: 0 created; 2 bad name or protocol, or the folder exists and is not empty.
    """
    from dockyard.domain.errors import DockyardError
    from dockyard.domain.names import validate_agent_name

    try:
        validate_agent_name(name)
    except DockyardError as exc:
        fail(exc.message, EXIT_USAGE)
    if protocol not in PROTOCOLS:
        fail(f"unknown protocol {protocol!r}.", EXIT_USAGE, details=f"Use one of: {', '.join(PROTOCOLS)}.")
    if runtime is not None or code:
        from dockyard.domain.code_runtimes import PYTHON_RUNTIMES

        if not code:
            fail("--runtime is for code-based agents.", EXIT_USAGE, details="Add --code, or leave out --runtime.")
        if runtime is not None and runtime not in PYTHON_RUNTIMES:
            fail(f"unknown runtime {runtime!r}.", EXIT_USAGE, details=f"Use one of: {', '.join(PYTHON_RUNTIMES)}.")
        runtime = runtime or (_DEFAULT_RUNTIME if _DEFAULT_RUNTIME in PYTHON_RUNTIMES else "python_3_12")
    target = directory or Path(name)
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        fail(f"{target} already exists and is not empty.", EXIT_USAGE,
             details="Choose another name, or --dir for another folder.")
    written = scaffold(target, name, protocol, base_image=base_image, registry=registry, runtime=runtime)
    console = stdout()
    console.print(f"Created {name} ({protocol}{', code-based, ' + runtime if runtime else ''}) in {target}/:",
                  markup=False)
    for path in written:
        console.print(f"  {path.relative_to(target).as_posix()}", markup=False)
    steps = "dockyard deploy" if runtime else "dockyard build && dockyard deploy"
    console.print(f"Next: cd {target} && {steps} && dockyard invoke {name} \"hello\"", markup=False)


def scaffold(target: Path, name: str, protocol: str, *, base_image: str | None = None,
             registry: str | None = None, description: str | None = None, runtime: str | None = None) -> list[Path]:
    """Write the project into `target` (made if missing); returns the files written, in order.

    With a `runtime` the project is code-based (`codeConfiguration` in agent.yaml, no Containerfile)."""
    adapter, version, route, example = PROTOCOLS[protocol]
    values = {
        "name": name,
        "description": json.dumps(description or f"{name}: a hosted agent that echoes what it is sent."),
        "protocol": protocol,
        "protocol_version": version,
        "adapter": adapter,
        "route": route,
        "example_reply": example,
        "base_image": base_image or DEFAULT_BASE_IMAGE,
        "runtime": runtime or "",
    }
    templates = resources.files("dockyard.project") / "templates"
    written: list[Path] = []
    for folder in ("common", protocol, *(["code"] if runtime else [])):
        written += _copy(templates / folder, target, values,
                         leave_out=_IMAGE_ONLY if runtime and folder == "common" else frozenset())
    settings = {key: value for key, value in (("registry", registry), ("base_image", base_image)) if value}
    if settings:
        path = target / "dockyard.yaml"
        lines = ["# dockyard's settings for this project (not read by Azure's tooling); see `dockyard build --help`."]
        lines += [f"{key}: {json.dumps(value)}" for key, value in settings.items()]
        path.write_text("\n".join(lines) + "\n")
        written.append(path)
    return written


def _copy(source: Traversable, target: Path, values: dict[str, str],
          leave_out: set[str] | frozenset[str] = frozenset()) -> list[Path]:
    written = []
    target.mkdir(parents=True, exist_ok=True)
    for entry in sorted(source.iterdir(), key=lambda e: e.name):
        if entry.name == "__pycache__" or entry.name in leave_out:
            continue
        destination = target / _RENAMED.get(entry.name, entry.name)
        if entry.is_dir():
            written += _copy(entry, destination, values)
            continue
        text = entry.read_text(encoding="utf-8")
        for key, value in values.items():
            text = text.replace("{{" + key + "}}", value)
        destination.write_text(text, encoding="utf-8")
        written.append(destination)
    return written
