"""Container engine, base image and test images, for pytest fixtures.

- `engine_url()`: the Docker-Engine-API URL of a container engine that answers `/_ping`, or None.
- `ensure_base_image()`: the debootstrap-built Debian + Python base image (ci/build-base-image.sh).
- `build_image(name, tag, context_dir)`: `podman build` of a fixture image, skipped when an image with that
  tag already carries the hash of the context directory (and of the base image) in a label.
- `push_image(local_ref, registry_ref, creds=None)`: `podman push --tls-verify=false` to a test registry.

Images are built and pushed with the podman CLI (it builds without a daemon, with --network host and the
host's CA bundle mounted so pip reaches the package index); containers are run through the engine's API.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlparse

REPO_ROOT = Path(__file__).resolve().parents[2]
FIXTURE_IMAGES = REPO_ROOT / "tests" / "fixtures" / "images"
BASE_IMAGE = os.environ.get("DOCKYARD_BASE_IMAGE", "localhost/dockyard-ci/debian-python:bookworm")
BUILD_BASE_SCRIPT = REPO_ROOT / "ci" / "build-base-image.sh"
TEST_IMAGE_NAMESPACE = "localhost/dockyard-test"
CONTEXT_HASH_LABEL = "io.dockyard.test.context-hash"
PODMAN_SOCKET = "/run/podman/podman.sock"
LOCK_PATH = Path(tempfile.gettempdir()) / "dockyard-test-images.lock"


class ImageError(RuntimeError):
    """A build, push or base-image step failed; the message carries the tool's output."""


# --------------------------------------------------------------------------- engine discovery

def _status_code(answer: bytes) -> int:
    status_line = answer.split(b"\r\n", 1)[0].split()
    return int(status_line[1]) if len(status_line) >= 2 and status_line[1].isdigit() else 0


def _http_ping(sock: socket.socket, host: str) -> bool:
    sock.sendall(f"GET /_ping HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
    answer = b""
    while len(answer) < 65536 and (chunk := sock.recv(4096)):
        answer += chunk
    return _status_code(answer) == 200


def _ping_unix(path: str, timeout: float) -> bool:
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(path)
            return _http_ping(sock, "d")
    except OSError:
        return False


def _ping_tcp(host: str, port: int, timeout: float) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.settimeout(timeout)
            return _http_ping(sock, host)
    except OSError:
        return False


def ping(url: str, timeout: float = 2.0) -> bool:
    """True when the Docker-Engine-API at `url` (unix:///path or tcp://host:port) answers GET /_ping."""
    parsed = urlparse(url)
    if parsed.scheme in ("unix", "") and (parsed.path or url):
        return _ping_unix(parsed.path or url, timeout)
    if parsed.scheme in ("tcp", "http") and parsed.hostname:
        return _ping_tcp(parsed.hostname, parsed.port or 2375, timeout)
    return False  # https/ssh engines are not probed here


def engine_candidates() -> list[str]:
    """Where to look, in order: $DOCKER_HOST alone when set, else the usual podman and docker sockets."""
    if os.environ.get("DOCKER_HOST"):
        return [os.environ["DOCKER_HOST"]]
    candidates = [f"unix://{PODMAN_SOCKET}", "unix:///var/run/docker.sock"]
    runtime_dir = os.environ.get("XDG_RUNTIME_DIR")
    if runtime_dir:
        candidates.append(f"unix://{runtime_dir}/podman/podman.sock")
    return candidates


def engine_url() -> str | None:
    """The first engine candidate that answers /_ping, or None."""
    for url in engine_candidates():
        if ping(url):
            return url
    return None


def podman_available() -> bool:
    return shutil.which("podman") is not None


# --------------------------------------------------------------------------- podman CLI helpers

def _podman(*args: str, check: bool = True, timeout: float | None = None,
            capture: bool = True) -> subprocess.CompletedProcess[str]:
    if not podman_available():
        raise ImageError("podman is not installed: apt-get install podman runc (then run ci/setup-podman.sh)")
    result = subprocess.run(["podman", *args], capture_output=capture, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise ImageError(f"podman {' '.join(args)} failed ({result.returncode}):\n{result.stdout[-3000:]}"
                         f"{result.stderr[-3000:]}")
    return result


def image_exists(ref: str) -> bool:
    return podman_available() and _podman("image", "exists", ref, check=False).returncode == 0


def image_inspect(ref: str) -> dict:
    return json.loads(_podman("image", "inspect", ref).stdout)[0]


def image_id(ref: str) -> str:
    return image_inspect(ref)["Id"]


def image_labels(ref: str) -> dict[str, str]:
    info = image_inspect(ref)
    return (info.get("Labels") or info.get("Config", {}).get("Labels") or {})


def remove_image(ref: str) -> None:
    _podman("rmi", "--force", ref, check=False)


@contextmanager
def _images_lock() -> Iterator[None]:
    """Serialises builds between processes (a test session and a bench run, say)."""
    with open(LOCK_PATH, "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


# --------------------------------------------------------------------------- base image

def ensure_base_image(timeout: float = 900.0) -> str:
    """The Debian bookworm + Python base image; built with ci/build-base-image.sh (debootstrap) if missing.

    Building needs root and debootstrap; the script skips all work when the image exists."""
    if image_exists(BASE_IMAGE):
        return BASE_IMAGE
    with _images_lock():
        if image_exists(BASE_IMAGE):
            return BASE_IMAGE
        if os.geteuid() != 0:
            raise ImageError(f"{BASE_IMAGE} is missing and building it needs root: sudo {BUILD_BASE_SCRIPT}")
        if shutil.which("debootstrap") is None:
            raise ImageError(f"{BASE_IMAGE} is missing and debootstrap is not installed: "
                             "apt-get install debootstrap, then run ci/build-base-image.sh")
        result = subprocess.run(["bash", str(BUILD_BASE_SCRIPT)], capture_output=True, text=True,
                                timeout=timeout, env={**os.environ, "DOCKYARD_BASE_IMAGE": BASE_IMAGE})
        if result.returncode != 0 or not image_exists(BASE_IMAGE):
            raise ImageError(f"{BUILD_BASE_SCRIPT} failed ({result.returncode}):\n{result.stdout[-3000:]}"
                             f"{result.stderr[-3000:]}")
    return BASE_IMAGE


# --------------------------------------------------------------------------- building fixture images

def image_ref(name: str, tag: str) -> str:
    """`echo-agent` -> `localhost/dockyard-test/echo-agent:TAG`; a name with a registry part is kept."""
    if "/" not in name:
        name = f"{TEST_IMAGE_NAMESPACE}/{name}"
    first = name.split("/", 1)[0]
    if "." not in first and ":" not in first and first != "localhost":
        name = f"localhost/{name}"
    return f"{name}:{tag}"


def context_hash(context_dir: Path, extra: Sequence[str] = ()) -> str:
    """sha256 over the context's files (relative path, executable bit, content) plus `extra` strings."""
    digest = hashlib.sha256()
    for path in sorted(p for p in Path(context_dir).rglob("*") if p.is_file()):
        relative = path.relative_to(context_dir).as_posix()
        if "__pycache__" in relative.split("/") or relative.endswith(".pyc"):
            continue
        digest.update(relative.encode() + b"\0")
        digest.update(b"x" if os.access(path, os.X_OK) else b"-")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    for item in extra:
        digest.update(b"\0extra\0" + item.encode())
    return digest.hexdigest()


def host_ca_bundle() -> str | None:
    """The CA bundle the host's pip trusts, to mount over the image's during a build."""
    for candidate in (os.environ.get("DOCKYARD_BUILD_CA_BUNDLE"), os.environ.get("PIP_CERT"),
                      os.environ.get("SSL_CERT_FILE"), "/etc/ssl/certs/ca-certificates.crt"):
        if candidate and Path(candidate).is_file():
            return candidate
    return None


def build_image(name: str, tag: str, context_dir: str | os.PathLike[str], *,
                build_args: dict[str, str] | None = None, containerfile: str | None = None,
                timeout: float = 1200.0) -> str:
    """`podman build` the context into `localhost/dockyard-test/NAME:TAG` and return that reference.

    Skipped when an image with that reference exists and its `io.dockyard.test.context-hash` label equals
    the hash of the context's files, the base image's id and the build args. Builds run with
    `--network host` and the host's CA bundle mounted at /etc/ssl/certs/ca-certificates.crt."""
    context = Path(context_dir).resolve()
    ref = image_ref(name, tag)
    args = {"BASE_IMAGE": ensure_base_image(), **(build_args or {})}
    base_id = image_id(args["BASE_IMAGE"]) if image_exists(args["BASE_IMAGE"]) else args["BASE_IMAGE"]
    wanted = context_hash(context, [f"base={base_id}", *(f"{k}={v}" for k, v in sorted(args.items())),
                                    f"file={containerfile or ''}"])
    if image_exists(ref) and image_labels(ref).get(CONTEXT_HASH_LABEL) == wanted:
        return ref
    with _images_lock():
        if image_exists(ref) and image_labels(ref).get(CONTEXT_HASH_LABEL) == wanted:
            return ref
        file = containerfile or next((f for f in ("Containerfile", "Dockerfile") if (context / f).is_file()), None)
        if file is None:
            raise ImageError(f"no Containerfile or Dockerfile in {context}")
        command = ["build", "--network", "host", "--pull=never", "--layers",
                   "--label", f"{CONTEXT_HASH_LABEL}={wanted}", "-f", str(context / file), "-t", ref]
        ca = host_ca_bundle()
        if ca:
            command += ["-v", f"{ca}:/etc/ssl/certs/ca-certificates.crt:ro"]
        for key, value in args.items():
            command += ["--build-arg", f"{key}={value}"]
        started = time.monotonic()
        _podman(*command, str(context), timeout=timeout)
        print(f"built {ref} in {time.monotonic() - started:.1f}s")
    return ref


def build_fixture(name: str, tag: str = "test") -> str:
    """Build one of tests/fixtures/images/NAME (echo-agent, crasher, memory-hog)."""
    return build_image(name, tag, FIXTURE_IMAGES / name)


# --------------------------------------------------------------------------- pushing

def push_image(local_ref: str, registry_ref: str, creds: tuple[str, str] | str | None = None, *,
               timeout: float = 300.0) -> str:
    """`podman push --tls-verify=false LOCAL REGISTRY_REF`, with `--creds user:pass` when given.

    Returns the pushed manifest's digest (sha256:...). Uses an empty auth file of its own, so credentials
    saved by an earlier `podman login` never make an anonymous push succeed. Raises ImageError (with
    podman's message) when the registry refuses."""
    with tempfile.TemporaryDirectory(prefix="dockyard-push-") as scratch:
        authfile = Path(scratch) / "auth.json"
        authfile.write_text("{}")
        digestfile = Path(scratch) / "digest"
        command = ["push", "--tls-verify=false", "--quiet", "--authfile", str(authfile),
                   "--digestfile", str(digestfile)]
        if creds is not None:
            command += ["--creds", creds if isinstance(creds, str) else f"{creds[0]}:{creds[1]}"]
        registry_ref = registry_ref.removeprefix("docker://")
        _podman(*command, local_ref, f"docker://{registry_ref}", timeout=timeout)
        return digestfile.read_text().strip()
