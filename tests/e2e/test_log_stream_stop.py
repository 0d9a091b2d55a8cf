"""`dockyard stop` after a log follower left: no wait for the agent's next line.

A log stream's lines are read in a worker thread that blocks until the agent writes one. A follower
that left a quiet agent's log (the console's live-log page, or a client of `…:logstream` itself) used
to keep that read, and with it the request, alive until the next line: SIGTERM then sat out uvicorn's
ten-second graceful-shutdown limit. Here both leave a quiet agent's log, then dockyard is stopped.
"""

from __future__ import annotations

import re
import ssl
import subprocess
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from azure.ai.projects import AIProjectClient
from azure.ai.projects.models import CodeConfiguration, HostedAgentDefinition, ProtocolVersionRecord
from azure.identity import DefaultAzureCredential
from support.process import DockyardProcess, dockyard_command

pytestmark = pytest.mark.e2e

# Logs a line when it starts and one per answer: after its start it is silent unless called.
AGENT = (Path(__file__).parents[1] / "fixtures" / "code" / "stdlib-agent" / "main.py").read_bytes()
NAME = "quiet"
# A clean stop takes a few seconds on a loaded machine (most of it the interpreter's exit); one that waits
# for the stream takes uvicorn's graceful-shutdown limit (10 s) on top.
STOP_BOUND_SECONDS = 7.0


@pytest.fixture
def server(tmp_path: Path) -> Iterator[DockyardProcess]:
    dockyard = DockyardProcess(home=tmp_path / "home", runtime="process").start()
    yield dockyard
    if dockyard.process and dockyard.process.poll() is None:
        dockyard.kill()
    subprocess.run(dockyard_command("down", "--home", str(dockyard.home)), capture_output=True, timeout=60)


def deploy_quiet_agent(server: DockyardProcess, tmp_path: Path) -> str:
    """The stdlib agent, active; answers the operator's bearer token for the direct stream."""
    with pytest.MonkeyPatch.context() as patch:
        for name, value in server.env().items():
            patch.setenv(name, value)
        credential = DefaultAzureCredential()
        client = AIProjectClient(endpoint=server.endpoint, credential=credential)
        archive = tmp_path / "agent.zip"
        with zipfile.ZipFile(archive, "w") as bundle:
            bundle.writestr("main.py", AGENT)
        definition = HostedAgentDefinition(
            cpu="0.5", memory="1Gi",
            code_configuration=CodeConfiguration(runtime="python_3_11", entry_point=["python", "main.py"],
                                                 dependency_resolution="bundled"),
            protocol_versions=[ProtocolVersionRecord(protocol="responses", version="v1")])
        with archive.open("rb") as code:
            version = client.agents.create_version_from_code(NAME, definition=definition, code=code).version
        deadline = time.monotonic() + 60
        while (status := client.agents.get_version(agent_name=NAME, agent_version=version).status) != "active":
            assert status != "failed" and time.monotonic() < deadline, status
            time.sleep(0.2)
        return credential.get_token("https://ai.azure.com/.default").token


def follow_then_leave(client: httpx.Client, url: str) -> str:
    """Open a log stream, read until the agent's start line is in, and leave (close the connection)."""
    seen = ""
    with client.stream("GET", url) as answer:
        assert answer.status_code == 200, answer.read()
        assert answer.headers["content-type"].startswith("text/event-stream")
        for text in answer.iter_text():
            seen += text
            if "stdlib agent listening on" in seen:
                break
    return seen


def test_stop_is_prompt_after_log_followers_left(server: DockyardProcess, tmp_path: Path) -> None:
    token = deploy_quiet_agent(server, tmp_path)
    verify = ssl.create_default_context(cafile=str(server.home / "tls" / "ca.pem"))
    link = re.search(r"console: (https://\S+/console/sign-in\?token=[\w-]+)", server.logs())
    assert link, server.logs()
    with httpx.Client(verify=verify, timeout=30) as browser:
        # The console's live-log page's stream, with the cookie the sign-in link sets.
        assert browser.get(link[1]).status_code == 303 and browser.cookies.get("dockyard_console")
        relayed = follow_then_leave(browser, f"{server.url}/console/api/logs/{NAME}/1/default")
    assert relayed.startswith("event: log\n") and "Successfully connected to container" in relayed
    with httpx.Client(verify=verify, timeout=30, headers={"authorization": f"Bearer {token}"}) as caller:
        direct = follow_then_leave(caller, f"{server.endpoint}/agents/{NAME}/versions/1/sessions/default:logstream"
                                           "?api-version=v1")
    assert "Successfully connected to container" in direct
    time.sleep(0.5)  # both requests' handlers have seen their clients go
    started = time.monotonic()
    assert server.stop() == 0
    took = time.monotonic() - started
    assert took < STOP_BOUND_SECONDS, f"stop took {took:.1f}s:\n{server.logs()[-3000:]}"
    assert "timeout graceful shutdown exceeded" not in server.logs()
