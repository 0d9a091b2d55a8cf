"""Microsoft's adapter keeps responses in dockyard's response storage, not in the sandbox (issue 11 §1).

The echo agent (azure-ai-agentserver-responses 2.3.0, unchanged) runs with `FOUNDRY_HOSTING_ENVIRONMENT` set, as
Foundry runs it (dockyard sets it in every sandbox: runtime/environment.py), so its own
`FoundryStorageProvider` stores each response through `{project}/storage/`. Shown
through the real azure-ai-projects and openai clients: `retrieve` and history (`previous_response_id`, seen as
the next turn's input items) across a released and resumed session, then after the session and its sandbox are
gone, continued in another sandbox; the rows are in dockyard's database (so the adapter did call dockyard), and
another caller meets the 404 of a missing response everywhere.
"""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path

import openai
import pytest
from azure.ai.projects import AIProjectClient
from azure.ai.projects.models import VersionRefIndicator
from azure.identity import DefaultAzureCredential
from support.hosted import deploy
from support.process import DockyardProcess

from dockyard.identity.ownership import OPERATOR_SUBJECT

pytestmark = [pytest.mark.e2e, pytest.mark.engine]


@pytest.fixture(scope="module")
def agent(project: AIProjectClient, image: str) -> str:
    return deploy(project, image)  # nothing set: the platform's default


def stored(home: Path, response_id: str, timeout: float = 10.0) -> tuple[str, str, str | None, str]:
    """The stored response's row (agent, owner subject, owner user, status), once the adapter wrote its final state."""
    deadline = time.monotonic() + timeout
    with sqlite3.connect(f"file:{home / 'dockyard.db'}?mode=ro", uri=True) as db:
        while True:
            row = db.execute("SELECT agent_name, owner_subject, owner_user, json_extract(body, '$.status') "
                             "FROM stored_responses WHERE id = ?", (response_id,)).fetchone()
            if (row is not None and row[3] == "completed") or time.monotonic() > deadline:
                assert row is not None, f"the adapter never stored {response_id} through dockyard"
                return row


def texts(client: openai.OpenAI, response_id: str) -> list[str]:
    """A response's input items (its history, then its own input) as text, oldest first."""
    return [part.text for item in client.responses.input_items.list(response_id, order="asc")
            for part in item.content]  # type: ignore[union-attr]


def test_responses_and_history_outlive_the_sandbox(server: DockyardProcess, project: AIProjectClient,
                                                   agent: str) -> None:
    client = project.get_openai_client(agent_name=agent)
    session = project.agents.create_session(agent_name=agent,
                                            version_indicator=VersionRefIndicator(agent_version="1")).agent_session_id
    in_session = {"agent_session_id": session}
    first = client.responses.create(input="first turn", extra_body=in_session)
    assert first.output_text == "echo: first turn"
    assert stored(server.home, first.id) == (agent, OPERATOR_SUBJECT, None, "completed")

    # Released (its sandbox stopped), then resumed by the next call: the new sandbox has nothing in memory.
    project.agents.stop_session(agent_name=agent, session_id=session)
    assert client.responses.retrieve(first.id).output_text == "echo: first turn"
    second = client.responses.create(input="second turn", previous_response_id=first.id, extra_body=in_session)
    assert stored(server.home, second.id)[3] == "completed"
    assert texts(client, second.id) == ["first turn", "echo: first turn", "second turn"]

    # Gone: the session, its sandbox and its volume. dockyard answers from storage, and a new sandbox (the
    # version's shared one) carries the conversation on from it.
    project.agents.delete_session(agent_name=agent, session_id=session)
    assert client.responses.retrieve(second.id).output_text == "echo: second turn"
    assert texts(client, second.id) == ["first turn", "echo: first turn", "second turn"]
    third = client.responses.create(input="third turn", previous_response_id=second.id)
    assert texts(client, third.id) == ["first turn", "echo: first turn", "second turn", "echo: second turn",
                                       "third turn"]

    bob = AIProjectClient(endpoint=server.endpoint, credential=DefaultAzureCredential(
        managed_identity_client_id="bob")).get_openai_client(agent_name=agent)
    for response_id in (first.id, second.id, third.id):  # gone with the session, and in a live sandbox
        with pytest.raises(openai.NotFoundError):
            bob.responses.retrieve(response_id)
        with pytest.raises(openai.NotFoundError):
            bob.responses.create(input="let me in", previous_response_id=response_id)
    assert os.environ["AZURE_AI_PROJECT_ENDPOINT"] == server.endpoint  # bob's token came from this dockyard
