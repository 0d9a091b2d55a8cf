"""Building an agent's image with the local engine's CLI, tagged by what went into it, and pushing it.

The tag is a digest of the build's inputs (the context's files, less what `.dockerignore` leaves out, the
Containerfile's path and the build arguments), never `latest`: the same folder always gets the same tag,
a changed one a new tag, so a deployed version names exactly the image it runs and dockyard (or Foundry)
never has to guess whether to pull again. The base image's own content is not part of it; pass another
`BASE_IMAGE` (or rebuild with --rebuild) to pick up a changed base.

podman and docker are driven through their CLIs, which both build without further setup; dockyard's
runtime then runs the image through the engine API of the same engine.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import shutil
import subprocess
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

TAG_PREFIX = "ctx-"
DIGEST_LABEL = "io.dockyard.context-digest"
BUILD_RECORD = Path(".dockyard") / "build.json"
LOCAL_NAMESPACE = "localhost"
ALWAYS_IGNORED = (".git", ".dockyard", ".venv", "__pycache__", "*.pyc", ".pytest_cache")
BUILDERS = ("podman", "docker")


class BuildError(RuntimeError):
    """A build or push failed; `output` holds the tool's last lines."""

    def __init__(self, message: str, output: str = "") -> None:
        super().__init__(message)
        self.output = output


@dataclass(frozen=True)
class BuildPlan:
    """Everything a build needs, decided before it starts."""

    builder: str  # podman or docker
    context: Path
    containerfile: Path
    image: str  # registry/name:ctx-... or localhost/name:ctx-...
    digest: str  # sha256 hex of the inputs
    registry: str | None
    build_args: dict[str, str] = field(default_factory=dict)
    network: str | None = None
    ca_bundle: Path | None = None

    @property
    def tag(self) -> str:
        return self.image.rsplit(":", 1)[1]


# -- deciding -----------------------------------------------------------------------------------------


def find_builder(preferred: str | None = None) -> str:
    """podman or docker, whichever CLI is installed (podman first: it is what dockyard's CI runs)."""
    candidates = [preferred] if preferred else list(BUILDERS)
    for name in candidates:
        if name not in BUILDERS:
            raise BuildError(f"unknown builder {name!r}: use podman or docker")
        if shutil.which(name):
            return name
    raise BuildError("neither podman nor docker is installed: apt-get install podman (or install docker)"
                     if not preferred else f"{preferred} is not installed")


def ignore_patterns(context: Path) -> list[str]:
    """What the build leaves out: dockyard's own always-ignored entries plus `.dockerignore`'s lines."""
    patterns = list(ALWAYS_IGNORED)
    for name in (".dockerignore", ".containerignore"):
        path = context / name
        if path.is_file():
            patterns += [line.strip().rstrip("/") for line in path.read_text().splitlines()
                         if line.strip() and not line.lstrip().startswith(("#", "!"))]
    return patterns


def _ignored(relative: str, patterns: Sequence[str]) -> bool:
    parts = relative.split("/")
    for pattern in patterns:
        pattern = pattern.lstrip("/")
        # A pattern matches the path, any leading folder of it, or (without a slash) any one component.
        if any(fnmatch.fnmatch("/".join(parts[:i]), pattern) for i in range(1, len(parts) + 1)):
            return True
        if "/" not in pattern and any(fnmatch.fnmatch(part, pattern) for part in parts):
            return True
    return False


def context_files(context: Path) -> list[Path]:
    patterns = ignore_patterns(context)
    files = []
    for path in sorted(context.rglob("*")):
        if path.is_file() and not _ignored(path.relative_to(context).as_posix(), patterns):
            files.append(path)
    return files


def context_digest(context: Path, containerfile: Path, build_args: dict[str, str]) -> str:
    """sha256 over the context's files (path, executable bit, content), the Containerfile's path and the
    build arguments: what decides the image's content, as far as dockyard can see it."""
    digest = hashlib.sha256()
    for path in context_files(context):
        digest.update(path.relative_to(context).as_posix().encode() + b"\0")
        digest.update(b"x" if os.access(path, os.X_OK) else b"-")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    inside = containerfile.resolve().is_relative_to(context.resolve())
    # A Containerfile inside the context is already hashed with the files; one outside it is hashed here.
    digest.update(b"\0containerfile\0" + (containerfile.resolve().relative_to(context.resolve()).as_posix().encode()
                                            if inside else containerfile.read_bytes()))
    for key, value in sorted(build_args.items()):
        digest.update(f"\0arg\0{key}={value}".encode())
    return digest.hexdigest()


def image_reference(registry: str | None, name: str, digest: str) -> str:
    """`REGISTRY/NAME:ctx-<20 hex>`, or `localhost/NAME:ctx-…` for an image that stays in the local engine."""
    repository = f"{registry.rstrip('/')}/{name}" if registry else f"{LOCAL_NAMESPACE}/{name}"
    return f"{repository}:{TAG_PREFIX}{digest[:20]}"


def is_local_registry(host: str) -> bool:
    """Registries spoken to over plain http, as dockyard's runtime does: this machine's."""
    hostname = host.rsplit(":", 1)[0] if not host.startswith("[") else host.split("]")[0] + "]"
    return hostname in ("localhost", "127.0.0.1", "[::1]")


# -- running the builder ------------------------------------------------------------------------------


def build_command(plan: BuildPlan, *, no_cache: bool = False) -> list[str]:
    command = [plan.builder, "build", "-f", str(plan.containerfile), "-t", plan.image,
               "--label", f"{DIGEST_LABEL}={plan.digest}"]
    if plan.builder == "podman":
        command.append("--layers")
    else:
        command += ["--progress", "plain"]
    if no_cache:
        command.append("--no-cache")
    if plan.network:
        command += ["--network", plan.network]
    if plan.ca_bundle is not None:
        if plan.builder != "podman":
            raise BuildError("--ca-bundle needs podman (docker build cannot mount files into RUN steps); with docker, "
                             "add the CA to the base image instead")
        command += ["-v", f"{plan.ca_bundle}:/etc/ssl/certs/ca-certificates.crt:ro"]
    for key, value in plan.build_args.items():
        command += ["--build-arg", f"{key}={value}"]
    command.append(str(plan.context))
    return command


def push_command(plan: BuildPlan, digest_file: Path) -> list[str]:
    command = [plan.builder, "push"]
    if plan.builder == "podman":
        command += ["--digestfile", str(digest_file)]
        if plan.registry and is_local_registry(plan.registry.split("/", 1)[0]):
            command.append("--tls-verify=false")
    command.append(plan.image)
    return command


def image_exists(builder: str, image: str) -> bool:
    """Whether the local engine already has `image` (same tag = same inputs, so no need to build again)."""
    check = [builder, "image", "inspect", image]
    return subprocess.run(check, capture_output=True).returncode == 0


def run_streamed(command: list[str], on_line: Callable[[str], None], *, tail: int = 80) -> None:
    """Run `command`, handing each output line to `on_line`; BuildError with the last `tail` lines on failure."""
    lines: list[str] = []
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1,
                               errors="replace", stdin=subprocess.DEVNULL)
    assert process.stdout is not None
    for line in process.stdout:
        line = line.rstrip("\n")
        lines.append(line)
        del lines[:-tail]
        on_line(line)
    if process.wait() != 0:
        raise BuildError(f"`{' '.join(command[:2])}` failed with exit code {process.returncode}", "\n".join(lines))


def pushed_digest(builder: str, digest_file: Path, output: Iterable[str]) -> str | None:
    """The manifest digest the registry stored: podman writes it to --digestfile, docker prints it."""
    if builder == "podman" and digest_file.is_file():
        return digest_file.read_text().strip() or None
    for line in output:
        if "digest: sha256:" in line:
            return "sha256:" + line.split("digest: sha256:", 1)[1].split()[0]
    return None


# -- the record deploy reads --------------------------------------------------------------------------


def write_record(project: Path, plan: BuildPlan, pushed: bool, digest: str | None) -> Path:
    path = project / BUILD_RECORD
    path.parent.mkdir(exist_ok=True)
    (path.parent / ".gitignore").write_text("*\n")
    path.write_text(json.dumps({
        "image": plan.image, "context_digest": plan.digest, "registry": plan.registry, "pushed": pushed,
        "manifest_digest": digest, "builder": plan.builder,
        "build_args": plan.build_args,
    }, indent=2) + "\n")
    return path


def read_record(project: Path) -> dict[str, object] | None:
    path = project / BUILD_RECORD
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None
