"""Deploying the echo agent on a test dockyard and calling it as Foundry's clients do.

Shared by the engine tests that need a running hosted agent (sessions files, invocations): the image is
built from `tests/fixtures/images/echo-agent` and pushed to a throwaway registry, as a user would.
"""

from __future__ import annotations

import os
import ssl
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
from azure.ai.projects import AIProjectClient
from azure.ai.projects.models import ContainerConfiguration, HostedAgentDefinition, ProtocolVersionRecord
from azure.identity import DefaultAzureCredential

from support.engine import FIXTURE_IMAGES
from support.images import build_image, ensure_base_image, push_image
from support.process import DockyardProcess
from support.registry import Registry


@contextmanager
def echo_image(tag: str) -> Iterator[str]:
    """The echo agent's image, pushed to a registry that lives as long as the context."""
    ensure_base_image()
    local = build_image("echo-agent", "v1", FIXTURE_IMAGES / "echo-agent")
    with Registry() as registry:
        reference = f"{registry.host}/echo-agent:{tag}"
        push_image(local, reference)
        yield reference


@contextmanager
def project_client(server: DockyardProcess) -> Iterator[AIProjectClient]:
    """The 2.x SDK's client, with `dockyard env`'s exports in the environment while it is used."""
    saved = dict(os.environ)
    os.environ.update(server.env())
    try:
        yield AIProjectClient(endpoint=server.endpoint, credential=DefaultAzureCredential())
    finally:
        os.environ.clear()
        os.environ.update(saved)


def deploy(project: AIProjectClient, image: str, *, protocol: str = "responses", env: dict[str, str] | None = None,
           session_configuration: dict[str, Any] | None = None, name: str | None = None) -> str:
    """A new agent (or a new version of `name`) running `image`, once active; its name."""
    name = name or f"echo-{uuid.uuid4().hex[:6]}"
    definition = HostedAgentDefinition(
        cpu="0.5", memory="1Gi", container_configuration=ContainerConfiguration(image=image),
        protocol_versions=[ProtocolVersionRecord(protocol=protocol, version="2.0.0")],
        environment_variables=env or {},
    )
    if session_configuration is not None:
        definition["session_configuration"] = session_configuration
    version = project.agents.create_version(agent_name=name, definition=definition)
    deadline = time.monotonic() + 120
    while project.agents.get_version(agent_name=name, agent_version=version.version).status != "active":
        assert time.monotonic() < deadline, "version did not become active"
        time.sleep(0.2)
    return name


def tls_context(server: DockyardProcess) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=server.env()["REQUESTS_CA_BUNDLE"])


def bearer_token(server: DockyardProcess, *, identity_header: str | None = None, **params: str) -> str:
    """A token from dockyard's managed-identity endpoint, as DefaultAzureCredential would get it (`client_id=`
    for a named user, `resource=` for another audience; `identity_header` a sandbox's, for its agent token)."""
    env = server.env()
    answer = httpx.get(env["IDENTITY_ENDPOINT"],
                       params={"api-version": "2019-08-01", "resource": "https://ai.azure.com", **params},
                       headers={"X-IDENTITY-HEADER": identity_header or env["IDENTITY_HEADER"]},
                       verify=tls_context(server))
    assert answer.status_code == 200, answer.text
    return str(answer.json()["access_token"])
