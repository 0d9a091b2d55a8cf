"""azure-ai-projects 2.0.0b3 (sync client) against dockyard: one flow per invocation, JSON on stdout.

    python flows.py versions AGENT_NAME   # create, get, list/page in both orders, agents.get/list, delete
    python flows.py errors AGENT_NAME     # the error codes and exception types the SDK surfaces
    python flows.py before AGENT_NAME     # iterating list_versions(before=...) across pages

Every request the SDK sends is recorded (method, path, query) through azure-core's `raw_request_hook`,
so the test can check what went over the wire as well as what the SDK made of the answers.
"""

import json
import os
import sys
from urllib.parse import parse_qs, urlsplit

from azure.ai.projects import AIProjectClient
from azure.ai.projects.models import AgentProtocol, ImageBasedHostedAgentDefinition, ProtocolVersionRecord
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.identity import DefaultAzureCredential

IMAGE = "myregistry.azurecr.io/legacy-agent:v1"
requests_seen = []


def record(request):
    url = urlsplit(request.http_request.url)
    if url.path.endswith("/msi/token"):
        return
    requests_seen.append({"method": request.http_request.method, "path": url.path, "query": parse_qs(url.query)})


def make_client():
    return AIProjectClient(
        endpoint=os.environ["AZURE_AI_PROJECT_ENDPOINT"],
        credential=DefaultAzureCredential(),
        raw_request_hook=record,
    )


def definition(**overrides):
    fields = {
        "container_protocol_versions": [ProtocolVersionRecord(protocol=AgentProtocol.RESPONSES, version="v1")],
        "image": IMAGE,
        "cpu": "1",
        "memory": "2Gi",
        "environment_variables": {"MODEL_NAME": "gpt-4o-mini"},
    }
    fields.update(overrides)
    return ImageBasedHostedAgentDefinition(**fields)


def versions_of(items):
    return [item.version for item in items]


def failure(exc):
    error = getattr(exc, "error", None)
    return {
        "type": type(exc).__name__,
        "is_http_response_error": isinstance(exc, HttpResponseError),
        "status_code": getattr(exc, "status_code", None),
        "code": getattr(error, "code", None),
        "message": getattr(error, "message", None) or str(exc),
    }


def flow_versions(name):
    client = make_client()
    out = {}
    created = []
    for n in range(5):
        version = client.agents.create_version(
            agent_name=name,
            definition=definition(cpu=["0.5", "1", "2", "4", "500m"][n],
                                  memory=["1Gi", "2Gi", "4Gi", "8Gi", "1024Mi"][n]),
            description=f"version number {n + 1}",
            metadata={"n": str(n + 1)},
        )
        created.append({
            "version": version.version, "id": version.id, "status": version["status"],
            "description": version.description, "metadata": dict(version.metadata),
            "created_at_year": version.created_at.year,
        })
    out["created"] = created

    fetched = client.agents.get_version(agent_name=name, agent_version="3")
    out["get_version"] = {
        "id": fetched.id, "version": fetched.version, "status": fetched["status"], "object": fetched["object"],
        "error": fetched.as_dict().get("error"),
        "definition_type": type(fetched.definition).__name__,
        "definition_wire": fetched.as_dict()["definition"],
        "cpu": fetched.definition.cpu, "memory": fetched.definition.memory,
        "protocols": [[p.protocol, p.version] for p in fetched.definition.container_protocol_versions],
    }

    out["list_default"] = versions_of(client.agents.list_versions(agent_name=name))
    start = len(requests_seen)
    out["list_desc_limit2"] = versions_of(client.agents.list_versions(agent_name=name, limit=2))
    desc_requests = requests_seen[start:]
    out["list_desc_limit2_queries"] = [
        {"limit": r["query"].get("limit"), "after": r["query"].get("after"), "order": r["query"].get("order")}
        for r in desc_requests
    ]
    out["list_asc_limit2"] = versions_of(client.agents.list_versions(agent_name=name, limit=2, order="asc"))
    out["list_desc_limit2_explicit"] = versions_of(client.agents.list_versions(agent_name=name, limit=2, order="desc"))
    out["pages_asc_limit2"] = [
        versions_of(page) for page in client.agents.list_versions(agent_name=name, limit=2, order="asc").by_page()
    ]
    out["pages_desc_limit2"] = [
        versions_of(page) for page in client.agents.list_versions(agent_name=name, limit=2).by_page()
    ]
    out["before_asc"] = versions_of(
        next(iter(client.agents.list_versions(agent_name=name, limit=2, order="asc", before=f"{name}:4").by_page()))
    )
    out["before_desc"] = versions_of(
        next(iter(client.agents.list_versions(agent_name=name, limit=2, order="desc", before=f"{name}:2").by_page()))
    )

    agent = client.agents.get(agent_name=name)
    out["agent"] = {
        "object": agent["object"], "id": agent.id, "name": agent.name,
        "latest_version": agent.versions.latest.version,
        "latest_status": agent.versions.latest["status"],
        "latest_error": agent.versions.latest.as_dict().get("error"),
        "latest_image": agent.versions.latest.definition["image"],
        "wire_keys": sorted(agent.keys()),
    }

    siblings = [f"{name}-s{n}" for n in range(3)]
    for sibling in siblings:
        client.agents.create_version(agent_name=sibling, definition=definition())
    everyone_asc = [a.name for a in client.agents.list(limit=2, order="asc")]
    everyone_desc = [a.name for a in client.agents.list(limit=2)]
    out["agents_list_asc"] = [a for a in everyone_asc if a.startswith(name)]
    out["agents_list_desc"] = [a for a in everyone_desc if a.startswith(name)]
    out["agents_list_hosted"] = sorted(a.name for a in client.agents.list(kind="hosted") if a.name.startswith(name))
    out["agents_list_prompt"] = [a.name for a in client.agents.list(kind="prompt") if a.name.startswith(name)]

    deleted_version = client.agents.delete_version(agent_name=name, agent_version="2")
    out["delete_version"] = {
        "object": deleted_version["object"], "name": deleted_version.name,
        "version": deleted_version.version, "deleted": deleted_version.deleted,
    }
    out["after_delete_version"] = versions_of(client.agents.list_versions(agent_name=name, limit=2, order="asc"))

    for agent_name in [name, *siblings]:
        gone = client.agents.delete(agent_name=agent_name)
        out.setdefault("delete_agent", []).append(
            {"object": gone["object"], "name": gone.name, "deleted": gone.deleted}
        )
    try:
        client.agents.get(agent_name=name)
        out["get_after_delete"] = None
    except HttpResponseError as exc:
        out["get_after_delete"] = failure(exc)
    out["agents_list_after_delete"] = [a.name for a in client.agents.list() if a.name.startswith(name)]
    out["api_versions"] = sorted({v for r in requests_seen for v in r["query"].get("api-version", [])})
    return out


def flow_errors(name):
    client = make_client()
    out = {}
    cases = {
        "protocol_v9": lambda: client.agents.create_version(
            agent_name=name,
            definition=definition(
                container_protocol_versions=[ProtocolVersionRecord(protocol=AgentProtocol.RESPONSES, version="v9")]
            ),
        ),
        "bad_image": lambda: client.agents.create_version(agent_name=name,
                                                          definition=definition(image="Not A Valid Image")),
        "cpu_8": lambda: client.agents.create_version(agent_name=name, definition=definition(cpu="8")),
        "memory_512Mi": lambda: client.agents.create_version(agent_name=name, definition=definition(memory="512Mi")),
        "bad_name": lambda: client.agents.create_version(agent_name="1-bad", definition=definition()),
        "unknown_agent_get": lambda: client.agents.get(agent_name=f"{name}-missing"),
        "unknown_agent_get_version": lambda: client.agents.get_version(agent_name=f"{name}-missing", agent_version="1"),
        "unknown_agent_list_versions": lambda: list(client.agents.list_versions(agent_name=f"{name}-missing")),
        "unknown_agent_delete": lambda: client.agents.delete(agent_name=f"{name}-missing"),
    }
    for label, call in cases.items():
        try:
            call()
            out[label] = None
        except HttpResponseError as exc:
            out[label] = failure(exc)
    # Nothing was half-created by the refused definitions.
    try:
        client.agents.get(agent_name=name)
        out["agent_after_refusals"] = "exists"
    except ResourceNotFoundError:
        out["agent_after_refusals"] = "absent"
    client.agents.create_version(agent_name=name, definition=definition())
    cases_existing = {
        "unknown_version_get": lambda: client.agents.get_version(agent_name=name, agent_version="9"),
        "unknown_version_delete": lambda: client.agents.delete_version(agent_name=name, agent_version="9"),
    }
    for label, call in cases_existing.items():
        try:
            call()
            out[label] = None
        except HttpResponseError as exc:
            out[label] = failure(exc)
    client.agents.delete(agent_name=name)
    return out


def flow_before(name):
    """`before=` as a caller uses it: iterate. After the first page the SDK asks again with
    `after=<last_id>` *and* the caller's `before` (it keeps every keyword on every page)."""
    client = make_client()
    for _ in range(5):
        client.agents.create_version(agent_name=name, definition=definition())
    out = {}
    start = len(requests_seen)
    try:
        out["before_asc_all"] = versions_of(
            client.agents.list_versions(agent_name=name, limit=2, order="asc", before=f"{name}:4")
        )
    except HttpResponseError as exc:
        out["before_asc_all"] = failure(exc)
    out["queries"] = [
        {k: r["query"].get(k) for k in ("limit", "order", "after", "before")} for r in requests_seen[start:]
    ]
    client.agents.delete(agent_name=name)
    return out


FLOWS = {"versions": flow_versions, "errors": flow_errors, "before": flow_before}

if __name__ == "__main__":
    flow, agent_name = sys.argv[1], sys.argv[2]
    print(json.dumps(FLOWS[flow](agent_name)))
