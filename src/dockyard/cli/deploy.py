"""`dockyard deploy`: agent.yaml and the built image (or the project's code) become a new agent version, on
dockyard or in Foundry.

The same code for both targets (see `connect`): `AIProjectClient.agents.create_version` with the 2.x SDK's
`HostedAgentDefinition`, built from `Manifest.hosted_definition` — what the Azure Developer CLI sends to
Foundry too. A code-based agent (`codeConfiguration`) goes with `create_version_from_code` instead: the
definition's `code_configuration` and the project folder as a deterministic zip (`project.code_zip`), so an
unchanged folder gives the same sha256 and the service hands back the version it already has.
Then it waits for `active`, because `creating` says nothing yet about whether the image
pulls or the container starts; a failure is shown with its code, message and the container's last lines.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from dockyard.cli.connect import HomeOption, Target, TargetOption, api_errors, project_client
from dockyard.cli.logs import VERSION_SANDBOX, read_logs
from dockyard.cli.output import EXIT_FAILED, EXIT_USAGE, fail, note, print_json, progress, stdout
from dockyard.cli.projects import load_project, warn_about
from dockyard.project import build as builds

if TYPE_CHECKING:
    from dockyard.project.code_zip import CodeZip
    from dockyard.project.manifest import Manifest

POLL_SECONDS = 0.2
LOG_LINES_ON_FAILURE = 20


def deploy_command(
    path: Path = typer.Argument(Path("."), help="The project folder (or its agent.yaml)."),
    target: Target = TargetOption,
    image: str = typer.Option(None, "--image", help="Deploy this image reference (default: what `dockyard build` "
                              "last built here, else agent.yaml's image)."),
    wait: bool = typer.Option(True, "--wait/--no-wait", help="Wait until the version is active (or failed)."),
    timeout: float = typer.Option(300.0, "--timeout", help="Seconds to wait for active."),
    json_output: bool = typer.Option(False, "--json", help="Print the version as JSON."),
    show_request: bool = typer.Option(False, "--show-request", help="Print the create_version request (URL and JSON "
                                      "body, never headers) on stderr, exactly as the SDK sends it."),
    home: Path = HomeOption,
) -> None:
    """Create a new version of the agent from agent.yaml and the image (or its code), then wait until it is active.

    With codeConfiguration in agent.yaml there is no image: the project folder is zipped (less .git, .venv,
    caches, .env files and what .dockerignore and .agentignore leave out) and uploaded with
    create_version_from_code. agent.yaml is checked with every `dockyard validate` rule first; ${VAR}
    references are resolved from your environment. --target azure sends the same definition to
    AZURE_AI_PROJECT_ENDPOINT with DefaultAzureCredential.

    Exit codes: 0 active (or created, with --no-wait); 1 the version failed or did not become active in
    time; 2 agent.yaml, the image or the environment is wrong; 3 target unreachable or credential
    refused.
    """
    manifest = load_project(path, check=True)
    warn_about(manifest)
    if manifest.code is not None:
        if image:
            fail("--image is for image-based agents; agent.yaml has codeConfiguration, so its folder is uploaded.",
                 EXIT_USAGE, details="Remove --image, or remove codeConfiguration from agent.yaml to deploy an image.")
        with tempfile.TemporaryDirectory(prefix="dockyard-code-") as scratch:
            bundle = _zip_project(manifest, Path(scratch))
            _deploy(manifest, target, None, bundle, wait=wait, timeout=timeout, json_output=json_output,
                    show_request=show_request, home=home)
        return
    reference = image or _built_image(manifest) or manifest.image
    if not reference:
        fail("there is no image to deploy.", EXIT_USAGE,
             details="Run `dockyard build` first, pass --image, or name a prebuilt `image:` in agent.yaml.")
    if target is Target.azure:
        _check_reachable_from_azure(reference)
    _deploy(manifest, target, reference, None, wait=wait, timeout=timeout, json_output=json_output,
            show_request=show_request, home=home)


def _deploy(manifest: Manifest, target: Target, reference: str | None, bundle: CodeZip | None, *, wait: bool,
            timeout: float, json_output: bool, show_request: bool, home: Path | None) -> None:
    """Create the version (from the image `reference`, or from the code `bundle`), wait, and report."""
    from dockyard.project.manifest import ManifestError

    try:
        fields = (manifest.code_definition(os.environ) if bundle is not None
                  else manifest.hosted_definition(reference or "", os.environ))
    except ManifestError as exc:
        fail(f"{exc.path}: environment variables refer to unset variables:", EXIT_USAGE, details=str(exc))
    if manifest.tools:
        note("agent.yaml's tools are not part of the 2.x hosted definition (HostedAgentDefinition); they are not "
             "sent.")

    from azure.ai.projects.models import HostedAgentDefinition

    client = project_client(target, home)
    hooks: dict[str, Any] = {"raw_request_hook": _print_request} if show_request else {}
    source = reference if bundle is None else f"code {bundle.sha256[:12]}"
    with api_errors(f"deploying {manifest.name}"):
        definition = HostedAgentDefinition(**fields)
        if bundle is None:
            created = client.agents.create_version(
                agent_name=manifest.name, definition=definition, description=manifest.description, **hooks,
            )
        else:
            note(f"Uploading {_size(bundle.size)} to {target.value}…")
            with bundle.path.open("rb") as code:
                created = client.agents.create_version_from_code(
                    manifest.name, definition=definition, code=code, code_zip_sha256=bundle.sha256,
                    description=manifest.description, **hooks,
                )
        version = str(created.version)
        status = _status(created.status) or "creating"
        note(f"Created {manifest.name} version {version} ({source}) on {target.value}.")
        details: Any = created
        if wait and status not in ("active", "failed"):
            details = _wait(client, manifest.name, version, timeout)
            status = _status(details.status)
    error = _error(details)
    if json_output:
        upload = None if bundle is None else {"sha256": bundle.sha256, "files": len(bundle.files), "bytes": bundle.size}
        print_json({"agent": manifest.name, "version": version, "status": status, "image": reference, "code": upload,
                    "target": target.value, "endpoint": os.environ.get("AZURE_AI_PROJECT_ENDPOINT"), "error": error})
    if status == "failed":
        _explain_failure(client, manifest.name, version, error)
        raise typer.Exit(EXIT_FAILED)
    if wait and status != "active":
        fail(f"{manifest.name} version {version} is still {status} after {timeout:.0f}s.", EXIT_FAILED,
             details=f"Check it with `dockyard status {manifest.name}` and `dockyard logs {manifest.name} "
             f"--version {version}`.")
    if not json_output:
        console = stdout()
        console.print(f"{manifest.name} version {version} is {status}.", markup=False)
        console.print(f"Invoke it:  dockyard invoke {manifest.name} \"hello\""
                      + ("" if target is Target.local else " --target azure"), markup=False)
        console.print(f"Its logs:   dockyard logs {manifest.name} --version {version}"
                      + ("" if target is Target.local else " --target azure"), markup=False)


def _zip_project(manifest: Manifest, scratch: Path) -> CodeZip:
    """The project folder as the zip to upload (see `code_zip` for what is left out), with what it holds."""
    from dockyard.project.code_zip import CodeZipError, build_zip

    root = manifest.path.parent
    try:
        bundle = build_zip(root, scratch / f"{manifest.name}.zip")  # the SDK wants a stream named *.zip
    except CodeZipError as exc:
        fail(str(exc), EXIT_USAGE, details="Leave out what the agent does not need with .agentignore "
             "(one pattern a line, as in .dockerignore).")
    for link in bundle.skipped_links:
        note(f"warning: {link} is a link leading out of {root}; it is left out of the upload.")
    note(f"Zipped {len(bundle.files)} files ({_size(bundle.content_bytes)}) from {root} into {_size(bundle.size)}, "
         f"sha256 {bundle.sha256[:12]}.")
    return bundle


def _size(count: int) -> str:
    if count < 1024 * 1024:
        return f"{count / 1024:.1f} KB"
    return f"{count / 1048576:.1f} MB"


def _built_image(manifest: Manifest) -> str | None:
    """What `dockyard build` recorded for this project, if the project has not changed since."""
    if manifest.dockerfile_path is None:
        return None
    record = builds.read_record(manifest.path.parent)
    if not record:
        if manifest.image:
            return None  # agent.yaml also names a prebuilt image: deploy that
        fail("this project has not been built yet.", EXIT_USAGE,
             details="Run `dockyard build` (or pass --image REF).")
    context = manifest.dockerfile_path.parent
    args = dict(record.get("build_args") or {})  # type: ignore[call-overload]
    if builds.context_digest(context, manifest.dockerfile_path, args) != record.get("context_digest"):
        fail(f"files changed since the last `dockyard build` (which made {record.get('image')}).", EXIT_USAGE,
             details="Run `dockyard build` again, or pass --image REF to deploy that image anyway.")
    return str(record["image"])


def _check_reachable_from_azure(reference: str) -> None:
    """A warning, not a refusal: the endpoint may be a dockyard on this machine posing as Foundry."""
    registry = reference.split("/", 1)[0] if "/" in reference else ""
    if registry == builds.LOCAL_NAMESPACE or builds.is_local_registry(registry):
        note(f"warning: {reference} is on this machine; Foundry cannot pull it and the version will fail with "
             "ImagePullBackOff. Build with a registry Foundry can reach: dockyard build --registry "
             "<name>.azurecr.io (and give the project's identity AcrPull on it).")


REQUEST_MARKER = "--- create_version request ---"


def _print_request(request: Any) -> None:
    """azure-core's raw_request_hook: the request as it leaves the pipeline, body included, headers left out
    (they carry the bearer token)."""
    http_request = request.http_request
    body = http_request.body
    if isinstance(body, bytes):
        body = body.decode(errors="replace")
    elif body is None and getattr(http_request, "files", None):
        body = "(multipart: the metadata part and the code zip)"
    typer.echo(f"{REQUEST_MARKER}\n{http_request.method} {http_request.url}\n{body}\n{REQUEST_MARKER}", err=True)


def _wait(client, name: str, version: str, timeout: float):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    started = time.monotonic()
    with progress(f"Waiting for {name} version {version} to become active…") as status:
        while True:
            current = client.agents.get_version(agent_name=name, agent_version=version)
            if _status(current.status) in ("active", "failed") or time.monotonic() >= deadline:
                return current
            status.update(f"Waiting for {name} version {version} to become active… {_status(current.status)}, "
                          f"{time.monotonic() - started:.0f}s")
            time.sleep(POLL_SECONDS)


def _status(value: Any) -> str:
    """The wire string of a status: the SDK hands out enum members for known values, strings for others."""
    return str(getattr(value, "value", value) or "")


def _error(details: Any) -> dict[str, str] | None:
    error = details.get("error") if hasattr(details, "get") else None
    if not error:
        return None
    return {"code": str(error.get("code", "")), "message": str(error.get("message", ""))}


def _explain_failure(client, name: str, version: str, error: dict[str, str] | None) -> None:  # type: ignore[no-untyped-def]
    code = error["code"] if error else "Failed"
    message = error["message"] if error else "the service gave no reason"
    typer.echo(f"dockyard: error: {name} version {version} failed: {code}", err=True)
    typer.echo(message, err=True)
    if "Last log lines" in message:
        return  # dockyard put them in the message already
    lines = _last_lines(client, name, version)
    if lines:
        typer.echo("Last log lines:", err=True)
        for line in lines:
            typer.echo(f"  {line}", err=True)


def _last_lines(client, name: str, version: str) -> list[str]:  # type: ignore[no-untyped-def]
    """The container's last lines from the log stream, when it still has a container to read."""
    from azure.core.exceptions import AzureError

    try:
        lines = [line.message for line in read_logs(client, name, version, VERSION_SANDBOX, idle_seconds=1.5)
                 if line.stream != "status"]
    except AzureError:
        return []
    return lines[-LOG_LINES_ON_FAILURE:]
