"""Session files through the real 2.x SDK (`client.agents.*_session_file`) against a session on podman.

The echo agent reads and writes files on request (`/cat`, `/write`, `/symlink`), so each test can show
that what the API writes is what the agent sees at /session, and the other way round.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from urllib.parse import urlsplit

import httpx
import pytest
from azure.ai.projects import AIProjectClient
from azure.ai.projects.models import VersionRefIndicator
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from support.hosted import bearer_token, deploy, tls_context
from support.process import DockyardProcess

pytestmark = [pytest.mark.e2e, pytest.mark.engine]

FIFTY_MB = 50 * 1024 * 1024


@pytest.fixture(scope="module")
def agent(project: AIProjectClient, image: str) -> str:
    return deploy(project, image)


@pytest.fixture()
def session(project: AIProjectClient, agent: str) -> str:
    made = project.agents.create_session(agent_name=agent, version_indicator=VersionRefIndicator(agent_version="1"))
    return made.agent_session_id


def ask(project: AIProjectClient, agent: str, session: str, text: str) -> str:
    """One turn with the echo agent in `session`: the agent's answer."""
    return project.get_openai_client(agent_name=agent).responses.create(
        input=text, extra_body={"agent_session_id": session}).output_text


def download(project: AIProjectClient, agent: str, session: str, path: str) -> bytes:
    return b"".join(project.agents.download_session_file(agent_name=agent, session_id=session, path=path))


def test_round_trip_upload_list_download_delete(project: AIProjectClient, agent: str, session: str) -> None:
    content = os.urandom(3 * 1024 * 1024 + 17)  # past the 1 MiB in-memory spool, and not a block multiple
    written = project.agents.upload_session_file(agent_name=agent, session_id=session, content=content,
                                                 path="data/blob.bin")
    assert (written.path, written.bytes_written) == ("data/blob.bin", len(content))

    top = {e.name: e for e in project.agents.list_session_files(agent_name=agent, session_id=session)}
    assert top["data"].is_directory and top["data"].size == 0
    inside = list(project.agents.list_session_files(agent_name=agent, session_id=session, path="data"))
    assert [(e.name, e.size, e.is_directory) for e in inside] == [("blob.bin", len(content), False)]
    assert inside[0].modified_time.year >= 2024

    assert download(project, agent, session, "data/blob.bin") == content

    project.agents.delete_session_file(agent_name=agent, session_id=session, path="data/blob.bin")
    with pytest.raises(ResourceNotFoundError):
        download(project, agent, session, "data/blob.bin")
    assert list(project.agents.list_session_files(agent_name=agent, session_id=session, path="data")) == []


def test_the_agent_sees_uploads_and_the_api_sees_what_the_agent_wrote(project: AIProjectClient, agent: str,
                                                                      session: str) -> None:
    project.agents.upload_session_file(agent_name=agent, session_id=session, content=b"from the caller",
                                       path="inbox/note.txt")
    assert ask(project, agent, session, "/cat /session/inbox/note.txt") == "cat from the caller"
    # The agent can write where dockyard made the directory: uploads are owned by the agent's user.
    assert ask(project, agent, session, "/write /session/inbox/reply.txt from the agent") == "wrote 14"
    assert download(project, agent, session, "inbox/reply.txt") == b"from the agent"
    names = [e.name for e in project.agents.list_session_files(agent_name=agent, session_id=session, path="inbox")]
    assert names == ["note.txt", "reply.txt"]


def test_files_outlive_the_sandbox_and_can_be_reached_while_it_is_stopped(project: AIProjectClient, agent: str,
                                                                          session: str) -> None:
    assert ask(project, agent, session, "/write /session/kept.txt still here") == "wrote 10"
    project.agents.stop_session(agent_name=agent, session_id=session)
    assert download(project, agent, session, "kept.txt") == b"still here"
    project.agents.upload_session_file(agent_name=agent, session_id=session, content=b"while stopped",
                                       path="later/while.txt")
    assert {e.name for e in project.agents.list_session_files(agent_name=agent, session_id=session)} >= {
        "kept.txt", "later"}
    project.agents.delete_session_file(agent_name=agent, session_id=session, path="kept.txt")
    # The next request resumes the session (a cold start) and its container sees the same volume.
    assert ask(project, agent, session, "/cat /session/later/while.txt") == "cat while stopped"
    assert ask(project, agent, session, "/cat /session/kept.txt").startswith("cat error")


def test_a_directory_is_deleted_only_when_empty_or_recursively(project: AIProjectClient, agent: str,
                                                              session: str) -> None:
    project.agents.upload_session_file(agent_name=agent, session_id=session, content=b"x", path="tree/a/b.txt")
    with pytest.raises(HttpResponseError) as caught:
        project.agents.delete_session_file(agent_name=agent, session_id=session, path="tree")
    assert caught.value.status_code == 409 and caught.value.error.code == "DirectoryNotEmpty"
    project.agents.delete_session_file(agent_name=agent, session_id=session, path="tree", recursive=True)
    assert "tree" not in {e.name for e in project.agents.list_session_files(agent_name=agent, session_id=session)}


@pytest.mark.parametrize("path", ["../escape.txt", "a/../../escape.txt", "/etc/passwd", "~/x", ".."])
def test_paths_leaving_the_home_are_refused(project: AIProjectClient, agent: str, session: str, path: str) -> None:
    with pytest.raises(HttpResponseError) as caught:
        project.agents.upload_session_file(agent_name=agent, session_id=session, content=b"x", path=path)
    assert caught.value.status_code == 400 and caught.value.error.code == "InvalidSessionFilePath"
    with pytest.raises(HttpResponseError) as caught:
        download(project, agent, session, path)
    assert caught.value.status_code == 400
    with pytest.raises(HttpResponseError) as caught:
        project.agents.delete_session_file(agent_name=agent, session_id=session, path=path)
    assert caught.value.status_code == 400


def test_a_link_the_agent_made_does_not_lead_out_of_the_home(project: AIProjectClient, agent: str,
                                                           session: str) -> None:
    assert ask(project, agent, session, "/symlink /session/out /etc") == "linked"
    # podman resolves links inside the volume, so `out/passwd` is /session/etc/passwd there: not found.
    with pytest.raises(HttpResponseError) as caught:
        download(project, agent, session, "out/passwd")
    assert caught.value.status_code in (400, 404)
    with pytest.raises(HttpResponseError) as caught:
        project.agents.upload_session_file(agent_name=agent, session_id=session, content=b"x", path="out/passwd")
    assert caught.value.status_code in (400, 409) or ask(project, agent, session, "/cat /etc/passwd") != "cat x"
    # Deleting runs in the container, where the link would lead to /etc: refused.
    with pytest.raises(HttpResponseError) as caught:
        project.agents.delete_session_file(agent_name=agent, session_id=session, path="out/passwd")
    assert caught.value.status_code == 400 and caught.value.error.code == "InvalidSessionFilePath"
    assert ask(project, agent, session, "/cat /etc/passwd").startswith("cat root:")


def test_uploads_over_50_mb_are_refused_with_413(server: DockyardProcess, agent: str, session: str) -> None:
    url = f"{server.endpoint}/agents/{agent}/endpoint/sessions/{session}/files/content"
    headers = {"Authorization": f"Bearer {bearer_token(server)}", "Content-Type": "application/octet-stream"}
    with httpx.Client(verify=tls_context(server), headers=headers, timeout=120) as http:
        # Streamed without a length: refused once the count passes 50 MB.
        def chunks() -> Iterator[bytes]:
            block = b"\0" * (1024 * 1024)
            for _ in range(51):
                yield block

        try:
            streamed = http.put(url, params={"api-version": "v1", "path": "big.bin"}, content=chunks())
            assert streamed.status_code == 413
        except httpx.TransportError:
            pass  # the server answered 413 and closed while the client was still sending
        exactly = http.put(url, params={"api-version": "v1", "path": "exact.bin"}, content=b"\1" * FIFTY_MB)
        assert exactly.status_code == 201, exactly.text
        listed = http.get(f"{server.endpoint}/agents/{agent}/endpoint/sessions/{session}/files",
                          params={"api-version": "v1"}).json()
        assert {e["name"]: e["size"] for e in listed["entries"]}.get("exact.bin") == FIFTY_MB
        assert "big.bin" not in {e["name"] for e in listed["entries"]}


def test_a_declared_length_over_50_mb_is_refused_before_the_body_is_sent(server: DockyardProcess, agent: str,
                                                                        session: str) -> None:
    # A raw request: clients will not declare a length they do not send. Only headers go out.
    target = urlsplit(f"{server.endpoint}/agents/{agent}/endpoint/sessions/{session}/files/content")
    request = (f"PUT {target.path}?api-version=v1&path=big.bin HTTP/1.1\r\nHost: {target.netloc}\r\n"
               f"Authorization: Bearer {bearer_token(server)}\r\nContent-Type: application/octet-stream\r\n"
               f"Content-Length: {FIFTY_MB + 1}\r\n\r\n")
    with socket.create_connection((target.hostname, target.port), timeout=30) as raw, \
            tls_context(server).wrap_socket(raw, server_hostname=target.hostname) as tls:
        tls.sendall(request.encode())
        answer = b""
        while b"\r\n\r\n" not in answer or b"SessionFileTooLarge" not in answer:
            chunk = tls.recv(65536)
            if not chunk:
                break
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 413") and b"SessionFileTooLarge" in answer, answer[:300]


def test_unknown_session_is_404(project: AIProjectClient, agent: str) -> None:
    with pytest.raises(ResourceNotFoundError) as caught:
        project.agents.upload_session_file(agent_name=agent, session_id="no-such-session", content=b"x", path="a")
    assert caught.value.error.code == "SessionNotFound"
    with pytest.raises(ResourceNotFoundError):
        list(project.agents.list_session_files(agent_name=agent, session_id="no-such-session"))


def test_listing_pages_by_name(project: AIProjectClient, agent: str, session: str) -> None:
    for name in ("c.txt", "a.txt", "b.txt"):
        project.agents.upload_session_file(agent_name=agent, session_id=session, content=b"-", path=f"paged/{name}")
    pages = project.agents.list_session_files(agent_name=agent, session_id=session, path="paged", limit=2).by_page()
    assert [[e.name for e in page] for page in pages] == [["a.txt", "b.txt"], ["c.txt"]]
