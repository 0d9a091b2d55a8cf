"""Code-based versions on a real engine: ContainersRuntime runs a tree of code on a runtime base image.

The first tests drive ContainersRuntime directly; the last ones go through `dockyard up --runtime
containers --code-image …` with the real 2.x SDK's create_version_from_code and the openai client.

The code is a tiny stdlib agent (http.server on $PORT). It answers POST /responses with what it sees from
inside its container (its Python, cwd, imports, whether /app can be written, its session file), so each
assertion reads the container's own view. The runtime image is the CI base image (Debian's python3.11, as
the `code_image` setting would give), and remote_build runs real pip inside it against PyPI.
"""

from __future__ import annotations

import io
import json
import os
import ssl
import time
import uuid
import zipfile
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import docker
import httpx
import pytest
from azure.ai.projects import AIProjectClient
from azure.ai.projects.models import CodeConfiguration, HostedAgentDefinition, ProtocolVersionRecord
from azure.identity import DefaultAzureCredential
from support.engine import remove_dockyard_leftovers, require_engine
from support.images import ensure_base_image, host_ca_bundle
from support.process import DockyardProcess

from dockyard.domain.code_runtimes import REMOTE_BUILD_FAILED
from dockyard.domain.session_files import parse_session_path
from dockyard.runtime.base import CodeWorkload, Observed, RuntimeFailure, Workload, WorkloadKey
from dockyard.runtime.containers import ContainersRuntime
from dockyard.runtime.engine import Engine, connect

pytestmark = [pytest.mark.e2e, pytest.mark.engine]

AGENT = '''
import json, os, sys, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# One line written in two pieces, as print("a", "b") does unbuffered: the log stream must show it whole.
sys.stdout.write("agent: starting")
time.sleep(0.3)
sys.stdout.write(" on " + os.environ["PORT"] + "\\n")


def report():
    seen = {"python": list(sys.version_info[:2]), "cwd": os.getcwd(), "pythonpath": os.environ.get("PYTHONPATH"),
            "argv0": sys.executable}
    try:
        import greeting
        seen["greeting"] = greeting.WORD
    except ImportError as exc:
        seen["greeting"] = str(exc)
    try:
        import six
        seen["six"] = six.__version__ + " from " + six.__file__
    except ImportError as exc:
        seen["six"] = str(exc)
    try:
        with open("/app/written.txt", "w") as handle:
            handle.write("x")
        seen["app_write"] = "written"
    except OSError as exc:
        seen["app_write"] = exc.strerror
    try:
        with open("/session/hello.txt") as handle:
            seen["session_file"] = handle.read()
    except OSError as exc:
        seen["session_file"] = exc.strerror
    return seen


class Handler(BaseHTTPRequestHandler):
    def _answer(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        self._answer(200 if self.path == "/readiness" else 404, {"status": "ok"})

    def do_POST(self):
        self.rfile.read(int(self.headers.get("content-length") or 0))
        seen = report()
        # A Responses answer the openai client reads: what the agent saw, as its output text.
        self._answer(200, {"id": "resp_1", "object": "response", "created_at": 0, "status": "completed",
                           "model": "probe", "seen": seen,
                           "output": [{"type": "message", "id": "msg_1", "role": "assistant", "status": "completed",
                                       "content": [{"type": "output_text", "text": json.dumps(seen),
                                                    "annotations": []}]}]})

    def log_message(self, *args):
        pass


ThreadingHTTPServer(("0.0.0.0", int(os.environ["PORT"])), Handler).serve_forever()
'''


@pytest.fixture(scope="module")
def engine() -> Iterator[Engine]:
    found = connect(require_engine())
    if found is None:
        pytest.fail("the engine answered /_ping but dockyard could not connect to it")
    yield found
    found.client.close()


@pytest.fixture(scope="module")
def image(engine: Engine) -> str:
    return ensure_base_image()


@pytest.fixture(scope="module")
def runtime(engine: Engine, image: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ContainersRuntime]:
    instance = f"test-code-{uuid.uuid4().hex[:8]}"
    ca = host_ca_bundle()  # pip inside the build container must trust what the host's pip trusts
    made = ContainersRuntime(engine, instance_id=instance, ca_bundle=Path(ca) if ca else None,
                             deps_root=tmp_path_factory.mktemp("deps"))
    yield made
    client = engine.client
    for label in (f"io.dockyard.instance={instance}", f"io.dockyard.build-of={instance}",
                  f"io.dockyard.files-helper-of={instance}"):
        for container in client.containers.list(all=True, filters={"label": label}):
            container.remove(force=True, v=True)
    for volume in client.volumes.list(filters={"label": f"io.dockyard.instance={instance}"}):
        volume.remove(force=True)


def make_tree(root: Path, *, requirements: str | None = None, packages: bool = False) -> Path:
    root.mkdir(parents=True)
    (root / "main.py").write_text(AGENT)
    if requirements is not None:
        (root / "requirements.txt").write_text(requirements)
    if packages:
        (root / "packages" / "greeting").mkdir(parents=True)
        (root / "packages" / "greeting" / "__init__.py").write_text("WORD = 'bundled hello'\n")
    for path in [root, *root.rglob("*")]:  # as dockyard keeps an unpacked bundle: read-only
        path.chmod(0o555 if path.is_dir() else 0o444)
    return root


def workload(tree: Path, image: str, *, mode: str = "bundled", uid: str | None = None, session: str = "",
             runtime: str = "python_3_11") -> Workload:
    code = CodeWorkload(content_hash=uuid.uuid4().hex * 2, tree=tree, runtime=runtime,
                        entry_point=("python", "main.py"), dependency_resolution=mode)
    return Workload(key=WorkloadKey(uid or uuid.uuid4().hex, session), project="default", agent_name="coder",
                    version="1", image=image, cpu=Decimal("0.5"), memory_bytes=512 * 1024 * 1024,
                    environment={"PORT": "8088", "GREETING": "hi"}, code=code)


def ask(observed: Observed, timeout: float = 60) -> dict[str, Any]:
    """Wait for readiness as the gateway does, then POST /responses and answer what the agent saw."""
    assert observed.endpoint is not None, observed
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(f"{observed.endpoint}/readiness", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"the agent at {observed.endpoint} never became ready")
        time.sleep(0.2)
    answer = httpx.post(f"{observed.endpoint}/responses", json={"input": "hi"}, timeout=10)
    assert answer.status_code == 200, answer.text
    seen: dict[str, Any] = answer.json()["seen"]
    return seen


def container_of(engine: Engine, runtime: ContainersRuntime, key: WorkloadKey) -> docker.models.containers.Container:
    [container] = [c for c in engine.client.containers.list(all=True, filters={
        "label": [f"io.dockyard.instance={runtime.instance_id}", f"io.dockyard.version-uid={key.version_uid}"]})
        if c.labels.get("io.dockyard.session", "") == key.session]
    return container


def test_bundled_code_runs_read_only_at_app_with_its_packages(runtime: ContainersRuntime, engine: Engine,
                                                              image: str, tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "tree", packages=True)
    agent = workload(tree, image)
    try:
        seen = ask(runtime.ensure_running(agent))
        assert seen["cwd"] == "/app"
        assert seen["greeting"] == "bundled hello"
        assert seen["pythonpath"] == "/app/packages"
        assert seen["app_write"] == "Read-only file system"
        assert seen["python"] == [3, 11]

        inspected = container_of(engine, runtime, agent.key).attrs
        [app] = [m for m in inspected["Mounts"] if m["Destination"] == "/app"]
        assert app["Source"] == str(tree.resolve()) and app["RW"] is False
        host = inspected["HostConfig"]
        # The same sandbox as an image agent gets: limits, no capabilities, read-only root.
        assert host["NanoCpus"] == 500_000_000 and host["Memory"] == 512 * 1024 * 1024
        assert host["ReadonlyRootfs"] is True and host["Privileged"] is False
        assert "no-new-privileges" in " ".join(host["SecurityOpt"] or [])
        assert [c.upper().removeprefix("CAP_") for c in host["CapDrop"]] == ["ALL"] or len(host["CapDrop"]) > 10
        config = inspected["Config"]
        assert config["Entrypoint"] + config["Cmd"] == ["python3", "main.py"]
        assert "GREETING=hi" in config["Env"]
        assert config["Labels"]["io.dockyard.agent"] == "coder"
        assert runtime.logs(agent.key) == ["agent: starting on 8088"]
        assert runtime.logs(agent.key, tail=1) == ["agent: starting on 8088"]
    finally:
        runtime.stop(agent.key)
    assert runtime.observe(agent.key) is None


def test_remote_build_installs_in_a_container_then_reuses_the_build(runtime: ContainersRuntime, engine: Engine,
                                                                    image: str, tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "tree", requirements="six==1.17.0\n")
    first = workload(tree, image, mode="remote_build")
    second_session = workload(tree, image, mode="remote_build", uid=first.key.version_uid, session="s-two")
    other_version = workload(make_tree(tmp_path / "tree2", requirements="six==1.17.0\n"), image, mode="remote_build")
    try:
        seen = ask(runtime.ensure_running(first))
        assert seen["six"] == "1.17.0 from /deps/six.py"
        assert seen["pythonpath"] == "/deps"

        lines = runtime.logs(first.key, tail=1000)
        built = [i for i, line in enumerate(lines) if "Successfully installed six-1.17.0" in line]
        agent = [i for i, line in enumerate(lines) if line.startswith("agent: starting")]
        assert lines[0].startswith("dockyard: remote_build: installing requirements.txt in ")
        assert built and agent and built[0] < agent[0], lines  # the build's lines first, then the agent's
        followed = runtime.follow_logs(first.key, tail=1000)
        assert followed is not None
        try:
            streamed = []
            for line in followed:
                streamed.append(line)
                if line.startswith("agent: starting"):
                    break
        finally:
            followed.close()
        assert streamed == lines[:agent[0] + 1]

        [deps] = [p for p in runtime.deps_root.iterdir() if p.is_dir() and len(p.name) == 64]  # type: ignore[union-attr]
        stamp = deps.stat().st_mtime_ns
        inspected = container_of(engine, runtime, first.key).attrs
        [mount] = [m for m in inspected["Mounts"] if m["Destination"] == "/deps"]
        assert mount["Source"] == str(deps) and mount["RW"] is False

        # Another session of the version, and another version with the same requirements: no second build.
        assert ask(runtime.ensure_running(second_session))["six"] == "1.17.0 from /deps/six.py"
        assert ask(runtime.ensure_running(other_version))["six"] == "1.17.0 from /deps/six.py"
        assert deps.stat().st_mtime_ns == stamp
        assert runtime.logs(other_version.key, tail=1000)[0] == (
            f"dockyard: remote_build: dependencies already built for requirements.txt ({deps})")
        assert not engine.client.containers.list(all=True, filters={
            "label": f"io.dockyard.build-of={runtime.instance_id}"})  # build containers are removed
    finally:
        for each in (first, second_session, other_version):
            runtime.discard(each.key)


def test_a_requirement_that_does_not_resolve_fails_the_build_and_leaves_nothing(
        runtime: ContainersRuntime, engine: Engine, image: str, tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "tree", requirements="no-such-package-dockyard==0.0.1\n")
    agent = workload(tree, image, mode="remote_build")
    before = sorted(p.name for p in runtime.deps_root.iterdir() if not p.name.endswith(".lock"))  # type: ignore[union-attr]
    with pytest.raises(RuntimeFailure) as raised:
        runtime.ensure_running(agent)
    assert raised.value.code == REMOTE_BUILD_FAILED
    assert "No matching distribution found for no-such-package-dockyard==0.0.1" in raised.value.message
    assert "packages/ folder" in raised.value.message
    assert runtime.observe(agent.key) is None
    assert not engine.client.containers.list(all=True, filters={
        "label": f"io.dockyard.build-of={runtime.instance_id}"})
    after = sorted(p.name for p in runtime.deps_root.iterdir() if not p.name.endswith(".lock"))  # type: ignore[union-attr]
    assert after == before  # no build directory, complete or not (the logs folder was there already)
    # The failed build's output is the version's log stream even though no container ever ran.
    assert any("no-such-package-dockyard" in line for line in runtime.logs(agent.key, tail=1000))


def test_session_files_of_a_code_based_session(runtime: ContainersRuntime, image: str, tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "tree")
    agent = workload(tree, image, session=f"code-{uuid.uuid4().hex[:6]}")
    path = parse_session_path("hello.txt", allow_root=False)
    try:
        # Before the session's sandbox runs: a helper made from the runtime image reaches the volume.
        runtime.write_session_file(agent, path, io.BytesIO(b"from before"), len(b"from before"))
        assert [entry.name for entry in runtime.list_session_files(agent, parse_session_path("", allow_root=True))
                ] == ["hello.txt"]
        seen = ask(runtime.ensure_running(agent))
        assert seen["session_file"] == "from before"
        stream = runtime.read_session_file(agent, path)
        assert b"".join(stream.chunks) == b"from before"
        runtime.delete_session_file(agent, path, recursive=False)
        assert ask(runtime.ensure_running(agent))["session_file"] == "No such file or directory"
    finally:
        runtime.discard(agent.key)


def test_a_runtime_image_that_cannot_be_pulled_says_how_to_name_another(engine: Engine, tmp_path: Path) -> None:
    unreachable = ContainersRuntime(engine, instance_id=f"test-code-{uuid.uuid4().hex[:8]}", pull_attempts=1)
    agent = workload(make_tree(tmp_path / "tree"), "localhost:9/library/python:3.12-slim")
    with pytest.raises(RuntimeFailure) as raised:
        unreachable.ensure_running(agent)
    assert raised.value.code in ("ImagePullBackOff", "InvalidContainerImage")
    assert "dockyard up --code-image IMAGE" in raised.value.message
    assert unreachable.observe(agent.key) is None


def test_the_entry_point_keeps_what_the_definition_says(runtime: ContainersRuntime, image: str,
                                                         tmp_path: Path) -> None:
    """`python3 -m` and arguments pass through as they are; only a bare `python` is renamed."""
    tree = make_tree(tmp_path / "tree")
    agent = workload(tree, image)
    agent = Workload(**{**agent.__dict__, "code": CodeWorkload(
        content_hash="c" * 64, tree=tree, runtime="python_3_11", entry_point=("python3", "-m", "main"))})
    try:
        seen = ask(runtime.ensure_running(agent))
        assert seen["cwd"] == "/app"
        assert json.dumps(seen)  # answered: the module ran as __main__
    finally:
        runtime.stop(agent.key)


# -- through dockyard and the SDK ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, engine: Engine, image: str) -> Iterator[DockyardProcess]:
    os.environ["DOCKER_HOST"] = engine.url
    running = DockyardProcess(home=tmp_path_factory.mktemp("code-home"), runtime="containers",
                              extra_args=("--code-image", image)).start()
    try:
        yield running
    finally:
        if running.process and running.process.poll() is None:
            running.stop()
        remove_dockyard_leftovers(running.home)


@pytest.fixture
def project(server: DockyardProcess, monkeypatch: pytest.MonkeyPatch) -> AIProjectClient:
    for name, value in server.env().items():
        monkeypatch.setenv(name, value)
    return AIProjectClient(endpoint=server.endpoint, credential=DefaultAzureCredential())


def deploy(project: AIProjectClient, files: dict[str, str], mode: str, tmp_path: Path) -> tuple[str, Any]:
    archive = tmp_path / "agent.zip"
    with zipfile.ZipFile(archive, "w") as bundle:
        for name, text in files.items():
            bundle.writestr(name, text)
    name = f"code-{uuid.uuid4().hex[:8]}"
    definition = HostedAgentDefinition(
        cpu="0.5", memory="1Gi",
        code_configuration=CodeConfiguration(runtime="python_3_12", entry_point=["python", "main.py"],
                                             dependency_resolution=mode),
        protocol_versions=[ProtocolVersionRecord(protocol="responses", version="v1")],
    )
    with archive.open("rb") as code:
        created = project.agents.create_version_from_code(name, definition=definition, code=code)
    deadline = time.monotonic() + 300
    while True:
        version = project.agents.get_version(agent_name=name, agent_version=created.version)
        if version.status in ("active", "failed") or time.monotonic() > deadline:
            return name, version
        time.sleep(0.5)


def log_lines(server: DockyardProcess, project: AIProjectClient, name: str, version: str, until: str) -> list[str]:
    """The version's log stream (the :logstream route dockyard logs reads), up to a line containing `until`."""
    token = DefaultAzureCredential().get_token("https://ai.azure.com/.default").token
    url = f"{server.endpoint}/agents/{name}/versions/{version}/sessions/default:logstream"
    lines: list[str] = []
    trust = ssl.create_default_context(cafile=str(server.home / "tls" / "ca.pem"))
    with httpx.stream("GET", url, params={"api-version": "v1"}, headers={"authorization": f"Bearer {token}"},
                      verify=trust, timeout=30) as answer:
        assert answer.status_code == 200, answer.read()
        for raw in answer.iter_lines():
            if raw.startswith("data: "):
                event = json.loads(raw[6:])
                if event["stream"] == "stdout":
                    lines.append(event["message"])
                    if until in event["message"]:
                        break
    return lines


def test_sdk_bundled_code_version_runs_in_a_container(project: AIProjectClient, engine: Engine, image: str,
                                                      tmp_path: Path) -> None:
    name, version = deploy(project, {"main.py": AGENT, "packages/greeting/__init__.py": "WORD = 'from the zip'\n"},
                           "bundled", tmp_path)
    assert version.status == "active", version.as_dict()
    seen = json.loads(project.get_openai_client(agent_name=name).responses.create(input="hi").output_text)
    assert seen["greeting"] == "from the zip" and seen["cwd"] == "/app"
    assert seen["app_write"] == "Read-only file system"
    containers = engine.client.containers.list(filters={"label": f"io.dockyard.agent={name}"})
    # The --code-image dockyard was given, not python:3.12-slim (which no hub serves here).
    assert containers and {c.attrs["Config"]["Image"] for c in containers} == {image}


def test_sdk_remote_build_version_shows_its_build_in_the_log_stream(server: DockyardProcess,
                                                                    project: AIProjectClient,
                                                                    tmp_path: Path) -> None:
    name, version = deploy(project, {"main.py": AGENT, "requirements.txt": "six==1.17.0\n"}, "remote_build",
                           tmp_path)
    assert version.status == "active", version.as_dict()
    seen = json.loads(project.get_openai_client(agent_name=name).responses.create(input="hi").output_text)
    assert seen["six"] == "1.17.0 from /deps/six.py"
    lines = log_lines(server, project, name, version.version, until="agent: starting on")
    assert lines[0].startswith("dockyard: remote_build: installing requirements.txt in ")
    assert any("Successfully installed six-1.17.0" in line for line in lines)
    assert lines[-1] == "agent: starting on 8088"


def test_sdk_remote_build_that_does_not_resolve_fails_the_version(project: AIProjectClient, tmp_path: Path) -> None:
    name, version = deploy(project, {"main.py": AGENT, "requirements.txt": "no-such-package-dockyard==0.0.1\n"},
                           "remote_build", tmp_path)
    assert version.status == "failed"
    error = version.as_dict()["error"]
    assert error["code"] == REMOTE_BUILD_FAILED
    assert "No matching distribution found for no-such-package-dockyard==0.0.1" in error["message"]
