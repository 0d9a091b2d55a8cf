"""`dockyard build`: the agent's image, built with the local engine, tagged with a digest of its inputs, pushed.

Where it goes, first found: --registry, DOCKYARD_REGISTRY, dockyard.yaml's `registry`. With none, the image
is tagged `localhost/NAME:ctx-…` and stays in the local engine: a dockyard on this machine runs it from
there (its runtime pulls only images it does not have, and never a `ctx-` tag it has), but nothing else
can, so `deploy --target azure` refuses such an image.

The reference is printed on stdout (alone, so `IMAGE=$(dockyard build)` works) and recorded in
`.dockyard/build.json`, which `dockyard deploy` reads.
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

import typer

from dockyard.cli.output import EXIT_FAILED, EXIT_USAGE, fail, note, print_json, progress
from dockyard.cli.projects import load_project
from dockyard.project import build as builds

_STEP = re.compile(r"^(?:STEP|Step) (\d+)/(\d+)\s*:?\s*(.*)$")
_BUILDKIT_STEP = re.compile(r"^#\d+ \[(?:[\w-]+ )?(\d+)/(\d+)\] (.*)$")


def build_command(
    path: Path = typer.Argument(Path("."), help="The project folder (or its agent.yaml)."),
    registry: str = typer.Option(
        None, "--registry", "-r", envvar="DOCKYARD_REGISTRY",
        help="Push to this registry, e.g. 127.0.0.1:5000/team or myacr.azurecr.io (default: dockyard.yaml's "
        "registry; none: keep the image in the local engine). Env: DOCKYARD_REGISTRY.",
        show_envvar=False,
    ),
    base_image: str = typer.Option(None, "--base-image", help="BASE_IMAGE build argument (default: dockyard.yaml's "
                                   "base_image, else the Containerfile's ARG default)."),
    builder: str = typer.Option(None, "--builder", envvar="DOCKYARD_BUILDER",
                                help="podman or docker (default: whichever is installed, podman first)."),
    network: str = typer.Option(None, "--network", envvar="DOCKYARD_BUILD_NETWORK",
                                help="Network for RUN steps, e.g. host when the bridge cannot reach the "
                                     "package index."),
    ca_bundle: Path = typer.Option(
        None, "--ca-bundle", envvar="DOCKYARD_BUILD_CA_BUNDLE",
        help="A CA bundle mounted over the image's during RUN steps (podman), for machines behind a TLS proxy.",
    ),
    rebuild: bool = typer.Option(False, "--rebuild", help="Build even if an image with this digest tag exists, "
                                 "without the layer cache."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Show the builder's output as it runs."),
    json_output: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Build the agent's image, tag it with a digest of what went in (never latest), and push it.

    Exit codes: 0 built (and pushed); 1 the build or push failed (its output is shown); 2 no agent.yaml,
    no dockerfilePath in it, or no builder installed.
    """
    manifest = load_project(path)
    if manifest.dockerfile_path is None:
        fail(f"{manifest.path} names no dockerfilePath, so there is nothing to build.", EXIT_USAGE,
             details="Add `dockerfilePath: Containerfile` to agent.yaml, or deploy its prebuilt `image:` as it is.")
    if not manifest.dockerfile_path.is_file():
        fail(f"{manifest.dockerfile_path} does not exist (agent.yaml's dockerfilePath).", EXIT_USAGE)
    project = manifest.path.parent
    try:
        plan = _plan(manifest, registry=registry or manifest.dockyard.registry, base_image=base_image,
                     builder=builder, network=network, ca_bundle=ca_bundle)
    except builds.BuildError as exc:
        fail(str(exc), EXIT_USAGE)

    built = False
    if rebuild or not builds.image_exists(plan.builder, plan.image):
        _build(plan, manifest.name, rebuild=rebuild, verbose=verbose)
        built = True
    else:
        note(f"{plan.image} is already built (same inputs, same digest tag).")
    digest = _push(plan, verbose=verbose) if plan.registry else None
    if not plan.registry:
        note("No registry configured: the image stays in the local engine, where a dockyard on this machine runs "
             "it. To push: --registry HOST[:PORT]/NAMESPACE, DOCKYARD_REGISTRY, or `registry:` in dockyard.yaml.")
    builds.write_record(project, plan, pushed=plan.registry is not None, digest=digest)
    if json_output:
        print_json({"image": plan.image, "tag": plan.tag, "context_digest": plan.digest, "built": built,
                    "pushed": plan.registry is not None, "manifest_digest": digest, "builder": plan.builder})
    else:
        typer.echo(plan.image)


def _plan(manifest, *, registry: str | None, base_image: str | None, builder: str | None,  # type: ignore[no-untyped-def]
          network: str | None, ca_bundle: Path | None) -> builds.BuildPlan:
    assert manifest.dockerfile_path is not None
    containerfile = manifest.dockerfile_path
    context = containerfile.parent
    build_args = {}
    if base_image or manifest.dockyard.base_image:
        build_args["BASE_IMAGE"] = base_image or manifest.dockyard.base_image
    if ca_bundle is not None and not ca_bundle.is_file():
        raise builds.BuildError(f"--ca-bundle {ca_bundle} is not a file")
    digest = builds.context_digest(context, containerfile, build_args)
    registry = registry.strip().rstrip("/") if registry else None
    return builds.BuildPlan(
        builder=builds.find_builder(builder), context=context, containerfile=containerfile,
        image=builds.image_reference(registry, manifest.name, digest), digest=digest, registry=registry,
        build_args=build_args, network=network, ca_bundle=ca_bundle.resolve() if ca_bundle else None,
    )


def _build(plan: builds.BuildPlan, name: str, *, rebuild: bool, verbose: bool) -> None:
    with progress(f"Building {name} with {plan.builder}…") as status:
        def on_line(line: str) -> None:
            if verbose:
                note(line)
            step = _STEP.match(line) or _BUILDKIT_STEP.match(line)
            if step:
                status.update(f"Building {name} with {plan.builder}: step {step[1]}/{step[2]} {step[3][:60]}")

        try:
            builds.run_streamed(builds.build_command(plan, no_cache=rebuild), on_line)
        except builds.BuildError as exc:
            fail(f"building {plan.image} failed: {exc}", EXIT_FAILED,
                 details=None if verbose else f"Last lines of the build:\n{exc.output}")
    note(f"Built {plan.image}")


def _push(plan: builds.BuildPlan, *, verbose: bool) -> str | None:
    output: list[str] = []
    with tempfile.TemporaryDirectory(prefix="dockyard-push-") as scratch, \
            progress(f"Pushing {plan.image}…"):
        digest_file = Path(scratch) / "digest"

        def on_line(line: str) -> None:
            output.append(line)
            if verbose:
                note(line)

        try:
            builds.run_streamed(builds.push_command(plan, digest_file), on_line)
        except builds.BuildError as exc:
            fail(f"pushing {plan.image} failed: {exc}", EXIT_FAILED,
                 details=f"{exc.output}\nIs the registry running, and are you logged in ({plan.builder} login "
                 f"{plan.registry.split('/', 1)[0] if plan.registry else ''})?")
        digest = builds.pushed_digest(plan.builder, digest_file, output)
    note(f"Pushed {plan.image}" + (f" ({digest})" if digest else ""))
    return digest

