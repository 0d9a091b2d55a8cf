"""The engine's API service killed under load and started again (issue 13 §7).

dockyard here drives a podman API service of its own (never the shared one at /run/podman/podman.sock),
on a socket under the test's temp folder. While callers keep invoking warm sessions and opening new ones,
the service is killed with SIGKILL: every answer must be a clean one (a success, or a 502/503 in the Azure
envelope; never a 500, never a hang), and once the service runs again dockyard recovers without a restart
of its own: new sessions start, the sandboxes that kept running are adopted, none is duplicated.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker
import httpx
import pytest
from azure.ai.projects import AIProjectClient
from support.engine import DOCKYARD_LABEL, remove_dockyard_leftovers
from support.hosted import bearer_token, deploy, project_client, tls_context
from support.images import ping
from support.process import DockyardProcess

pytestmark = [pytest.mark.e2e, pytest.mark.engine]


@dataclass
class PodmanService:
    """`podman system service` on a socket of its own, as ci/setup-podman.sh starts the shared one."""

    socket: Path
    log: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    def start(self) -> PodmanService:
        self.socket.unlink(missing_ok=True)
        with open(self.log, "ab") as log:
            # A session of its own, started from /: conmon leaves files in its working directory.
            self.process = subprocess.Popen(["podman", "system", "service", "--time=0", self.url], cwd="/",
                                            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                            start_new_session=True)
        deadline = time.monotonic() + 30
        while not ping(self.url):
            assert self.process.poll() is None, f"podman system service exited:\n{self.log.read_text()[-2000:]}"
            assert time.monotonic() < deadline, "podman system service did not answer /_ping within 30s"
            time.sleep(0.1)
        return self

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory, engine_url: str) -> Iterator[PodmanService]:
    if not engine_url.startswith("unix://") or not Path("/run/podman/podman.sock").exists():
        pytest.skip("needs podman: the test starts and kills a podman API service of its own")
    folder = tmp_path_factory.mktemp("engine")
    running = PodmanService(socket=folder / "podman.sock", log=folder / "podman-service.log").start()
    try:
        yield running
    finally:
        if running.process is not None and running.process.poll() is None:
            running.process.terminate()
            running.process.wait(timeout=30)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, service: PodmanService, image: str
           ) -> Iterator[DockyardProcess]:
    saved = os.environ.get("DOCKER_HOST")
    os.environ["DOCKER_HOST"] = service.url  # for the helpers that list and remove its containers
    running = DockyardProcess(home=tmp_path_factory.mktemp("home"), extra_args=(
        "--engine", service.url, "--max-memory", "none", "--max-sessions-per-agent", "100")).start()
    try:
        yield running
    finally:
        if running.process and running.process.poll() is None:
            running.stop()
        if not ping(service.url):
            service.start()
        remove_dockyard_leftovers(running.home)
        if saved is None:
            os.environ.pop("DOCKER_HOST", None)
        else:
            os.environ["DOCKER_HOST"] = saved


@pytest.fixture(scope="module")
def project(server: DockyardProcess) -> Iterator[AIProjectClient]:
    with project_client(server) as client:
        yield client


@dataclass(frozen=True)
class Answer:
    sent_at: float
    kind: str  # "warm": a session with a running sandbox; "new": a session never seen, so a cold start
    status: int
    code: str  # the Azure envelope's error code; "" for a success


@dataclass
class Outcomes:
    """What each call under load got back, and anything that was not a clean answer."""

    answers: list[Answer] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, sent_at: float, kind: str, answer: httpx.Response) -> None:
        code = ""
        if answer.status_code != 200:
            try:
                error = answer.json()["error"]
                code = error["code"]
                assert isinstance(error["message"], str) and error["message"]
            except (ValueError, KeyError, TypeError, AssertionError):
                self.problem(f"{kind}: {answer.status_code} without the Azure envelope: {answer.text[:300]}")
        with self.lock:
            self.answers.append(Answer(sent_at, kind, answer.status_code, code))

    def problem(self, text: str) -> None:
        with self.lock:
            self.problems.append(text)

    def wait_for(self, what: str, condition: Callable[[list[Answer]], bool], timeout: float = 120) -> float:
        deadline = time.monotonic() + timeout
        while True:
            with self.lock:
                if condition(list(self.answers)):
                    return time.monotonic()
            assert time.monotonic() < deadline, f"no {what} within {timeout}s: {self.summary()}"
            time.sleep(0.2)

    def summary(self, since: float = 0.0, until: float = float("inf")) -> Counter[tuple[str, int, str]]:
        with self.lock:
            return Counter((a.kind, a.status, a.code) for a in self.answers if since <= a.sent_at < until)


def containers(service: PodmanService, agent: str) -> list[Any]:
    client = docker.DockerClient(base_url=service.url)
    try:
        return client.containers.list(all=True, filters={"label": f"{DOCKYARD_LABEL}.agent={agent}"})
    finally:
        client.close()


def test_engine_killed_under_load_then_restarted(project: AIProjectClient, server: DockyardProcess,
                                                 service: PodmanService, image: str) -> None:
    agent = deploy(project, image)
    url = f"{server.endpoint}/agents/{agent}/endpoint/protocols/openai/responses"
    headers = {"Authorization": f"Bearer {bearer_token(server)}"}
    verify = tls_context(server)
    warm = [uuid.uuid4().hex for _ in range(2)]
    # Timeouts are generous: a busy machine may take a minute over a cold start; a hang takes for ever.
    with httpx.Client(verify=verify, headers=headers, timeout=180) as http:
        for session in warm:
            answer = http.post(url, params={"api-version": "v1"}, json={"input": "warm", "agent_session_id": session})
            assert answer.status_code == 200, answer.text

    outcomes = Outcomes()
    stop = threading.Event()

    def caller(index: int) -> None:
        # Half the callers keep a warm session busy; the others open a new session with every call.
        kind = "warm" if index % 2 == 0 else "new"
        # Past dockyard's own readiness timeout (120 s), so a slow cold start on a busy machine is not a hang.
        with httpx.Client(verify=verify, headers=headers, timeout=200) as http:
            while not stop.is_set():
                session = warm[index // 2 % len(warm)] if kind == "warm" else uuid.uuid4().hex
                sent_at = time.monotonic()
                try:
                    answer = http.post(url, params={"api-version": "v1"},
                                       json={"input": f"call {index}", "agent_session_id": session})
                except httpx.HTTPError as exc:  # a hang (timeout) or a dropped connection
                    outcomes.problem(f"{kind} sent at {sent_at:.1f}: {type(exc).__name__}: {exc}")
                    continue
                outcomes.record(sent_at, kind, answer)
                time.sleep(0.5 if kind == "new" else 0.05)  # a sandbox per new session: a few dozen at most

    threads = [threading.Thread(target=caller, args=(i,), daemon=True) for i in range(4)]
    for thread in threads:
        thread.start()
    try:
        outcomes.wait_for("new session started under load", lambda answers: any(
            a.kind == "new" and a.status == 200 for a in answers))
        service.kill()
        killed_at = time.monotonic()
        # The engine away, a cold start fails cleanly, saying so; the sandboxes that run still answer.
        outcomes.wait_for("failed cold start", lambda answers: any(
            a.sent_at > killed_at and a.kind == "new" and a.status == 503 and a.code == "ContainerRuntimeUnavailable"
            for a in answers))
        outcomes.wait_for("warm call with the engine away", lambda answers: any(
            a.sent_at > killed_at + 5 and a.kind == "warm" and a.status == 200 for a in answers))
        service.start()
        restarted_at = time.monotonic()
        # The engine back, both kinds of calls succeed again, with no restart of dockyard.
        recovered_at = outcomes.wait_for("new session after the restart", lambda answers: any(
            a.sent_at > restarted_at and a.kind == "new" and a.status == 200 for a in answers))
        outcomes.wait_for("calls after the recovery", lambda answers: sum(
            a.sent_at > recovered_at and a.status == 200 for a in answers) >= 6)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=240)
    assert not any(thread.is_alive() for thread in threads), "a call hung"

    print("engine up:", outcomes.summary(until=killed_at))
    print("engine down:", outcomes.summary(killed_at, restarted_at))
    print("engine back:", outcomes.summary(restarted_at, recovered_at), "then", outcomes.summary(recovered_at))
    assert outcomes.problems == [], (killed_at, restarted_at)
    assert all(a.status in (200, 502, 503) for a in outcomes.answers), outcomes.summary()
    assert outcomes.summary(until=killed_at) == Counter({k: n for k, n in outcomes.summary(until=killed_at).items()
                                                         if k[1] == 200})
    assert set(outcomes.summary(recovered_at)) <= {("warm", 200, ""), ("new", 200, "")}, outcomes.summary(recovered_at)
    assert server.process is not None and server.process.poll() is None

    # Adopted, not duplicated: one container per session and one for the version, all running.
    deadline = time.monotonic() + 60
    while True:
        found = containers(service, agent)
        per_session = Counter(c.labels.get(f"{DOCKYARD_LABEL}.session", "") for c in found)
        if all(n == 1 for n in per_session.values()) and all(c.status == "running" for c in found):
            break
        assert time.monotonic() < deadline, per_session
        time.sleep(1)
    assert per_session[""] == 1 and all(per_session[s] == 1 for s in warm)
    version = project.agents.get_version(agent_name=agent, agent_version="1")
    assert version.status == "active"
