"""`dockyard status --watch`: the table redrawn in place on a terminal (a real pty), printed refresh after refresh
into a pipe, picking up what changed, and Ctrl-C (SIGINT) ending it with exit 0."""

from __future__ import annotations

import os
import pty
import re
import select
import signal
import ssl
import subprocess
import time
import uuid
from collections.abc import Callable

import httpx
import pytest
from support.process import DockyardProcess, dockyard_command

IMAGE = "myregistry.azurecr.io/my-agent:v1"


def _create_agent(dockyard: DockyardProcess, name: str) -> None:
    """One version, over the REST API the SDK uses (the agent need not run: status shows it either way)."""
    env = dockyard.env()
    with httpx.Client(verify=ssl.create_default_context(cafile=env["REQUESTS_CA_BUNDLE"]), timeout=30) as http:
        token = http.get(env["IDENTITY_ENDPOINT"], params={"api-version": "2019-08-01", "resource": "https://ai.azure.com"},
                         headers={"X-IDENTITY-HEADER": env["IDENTITY_HEADER"]}).json()["access_token"]
        answer = http.post(f"{dockyard.endpoint}/agents/{name}/versions", params={"api-version": "v1"},
                           headers={"authorization": f"Bearer {token}", "Foundry-Features": "HostedAgents=V1Preview"},
                           json={"definition": {"kind": "hosted", "image": IMAGE, "cpu": "1", "memory": "2Gi",
                                                "container_protocol_versions": [{"protocol": "responses",
                                                                                 "version": "v1"}]}})
        assert answer.status_code == 200, answer.text


def _read_until(read: Callable[[], bytes], done: Callable[[str], bool], timeout: float = 30.0) -> str:
    seen = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not done(seen.decode(errors="replace")):
        seen += read()
    text = seen.decode(errors="replace")
    assert done(text), text[-3000:]
    return text


def _stop(process: subprocess.Popen[bytes], drain: Callable[[], bytes]) -> int:
    """Ctrl-C, then wait for the exit while still reading what the watch writes, as a terminal does: a watch
    blocked writing into a full pipe or pty (a test starved of CPU stops reading) could not finish its last draw."""
    process.send_signal(signal.SIGINT)  # what Ctrl-C sends
    deadline = time.monotonic() + 60
    while process.poll() is None and time.monotonic() < deadline:
        drain()
    return process.wait(timeout=1)


def test_watch_redraws_the_table_in_place_on_a_terminal_and_ctrl_c_exits_0(dockyard: DockyardProcess) -> None:
    name = f"watched-{uuid.uuid4().hex[:8]}"
    _create_agent(dockyard, name)
    main, child = pty.openpty()
    process = subprocess.Popen(dockyard_command("status", "--watch", "--interval", "0.2"), stdin=child, stdout=child,
                               stderr=child, env={**os.environ, "DOCKYARD_HOME": str(dockyard.home), "COLUMNS": "160",
                                                  "LINES": "50", "TERM": "xterm"})
    os.close(child)

    def read() -> bytes:
        ready, _, _ = select.select([main], [], [], 0.5)
        try:
            return os.read(main, 65536) if ready else b""
        except OSError:  # the child closed the terminal
            return b""

    try:
        text = _read_until(read, lambda seen: seen.count("refreshed") >= 3)
        assert name in text and "agent" in text and "status" in text
        # Rich's Live moves the cursor up over the last table and draws the next one over it.
        assert "\x1b[1A" in text and "\x1b[2K" in text
    finally:
        code = _stop(process, read)
        os.close(main)
    assert code == 0


def test_watch_into_a_pipe_prints_each_refresh_and_shows_what_changed(dockyard: DockyardProcess) -> None:
    first = f"piped-{uuid.uuid4().hex[:8]}"
    _create_agent(dockyard, first)
    process = subprocess.Popen(dockyard_command("status", first, "--watch", "--interval", "0.2"),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               env={**os.environ, "DOCKYARD_HOME": str(dockyard.home)})
    assert process.stdout is not None
    os.set_blocking(process.stdout.fileno(), False)

    def read() -> bytes:
        time.sleep(0.1)
        return process.stdout.read() or b""  # type: ignore[union-attr]

    try:
        text = _read_until(read, lambda seen: seen.count("refreshed") >= 2)
        assert "\x1b[" not in text  # no cursor moves or colour in a file
        assert text.count(first) >= 2
        # A second version of the agent shows up in a later refresh.
        _create_agent(dockyard, first)
        text += _read_until(read, lambda seen: re.search(rf"{first}\W+2\W", seen) is not None)
    finally:
        code = _stop(process, read)
    assert code == 0, process.stderr.read() if process.stderr else ""


def test_watch_refuses_json(dockyard: DockyardProcess) -> None:
    result = subprocess.run(dockyard_command("status", "--watch", "--json"), capture_output=True, text=True,
                            timeout=60, env={**os.environ, "DOCKYARD_HOME": str(dockyard.home)})
    assert result.returncode == 2 and "--watch draws a table" in result.stderr


def test_watch_shows_the_admission_budget_under_each_table(tmp_path_factory: pytest.TempPathFactory) -> None:
    server = DockyardProcess(home=tmp_path_factory.mktemp("budget-home"), runtime="process",
                             extra_args=("--max-memory", "4Gi")).start()
    try:
        process = subprocess.Popen(dockyard_command("status", "--watch", "--interval", "0.2"), stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, env={**os.environ, "DOCKYARD_HOME": str(server.home)})
        assert process.stdout is not None
        os.set_blocking(process.stdout.fileno(), False)

        def read() -> bytes:
            time.sleep(0.1)
            return process.stdout.read() or b""  # type: ignore[union-attr]

        try:
            text = _read_until(read, lambda seen: seen.count("budget: 0 sandboxes; memory 0.0Gi of 4.0Gi") >= 2)
        finally:
            code = _stop(process, read)
        assert code == 0
        assert text.index("refreshed") < text.index("budget:")
    finally:
        server.stop()
