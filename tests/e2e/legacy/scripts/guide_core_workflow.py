"""Sections 2-4 of the guide's "Core Workflow", verbatim, each run to see what the 2.0.0b3 SDK makes of it.

The guide's prints are captured (stdout carries one JSON report). Two of its lines fail inside the SDK,
before or after any request reaches the service:
- section 3 reads `version.state`: 2.0.0b3's AgentVersionDetails has no such attribute (the wire field is
  `status`, reachable only as `version["status"]`);
- section 4 passes `version=`: the parameter of `delete_version` is `agent_version`.
After each verbatim section the working form is run too.
"""

import contextlib
import io
import json

report = {}


def failure(exc):
    return {"type": type(exc).__name__, "message": str(exc)}


# ### 1. Imports
import os
from azure.identity import DefaultAzureCredential
from azure.ai.projects import AIProjectClient
from azure.ai.projects.models import (
    ImageBasedHostedAgentDefinition,
    ProtocolVersionRecord,
    AgentProtocol,
)

# ### 2. Create Hosted Agent
printed = io.StringIO()
with contextlib.redirect_stdout(printed):
    client = AIProjectClient(
        endpoint=os.environ["AZURE_AI_PROJECT_ENDPOINT"],
        credential=DefaultAzureCredential()
    )

    agent = client.agents.create_version(
        agent_name="my-hosted-agent",
        definition=ImageBasedHostedAgentDefinition(
            container_protocol_versions=[
                ProtocolVersionRecord(protocol=AgentProtocol.RESPONSES, version="v1")
            ],
            cpu="1",
            memory="2Gi",
            image="myregistry.azurecr.io/my-agent:latest",
            tools=[{"type": "code_interpreter"}],
            environment_variables={
                "AZURE_AI_PROJECT_ENDPOINT": os.environ["AZURE_AI_PROJECT_ENDPOINT"],
                "MODEL_NAME": "gpt-4o-mini"
            }
        )
    )
    print(f"Created agent: {agent.name} (version: {agent.version})")
report["create"] = {"printed": printed.getvalue(), "name": agent.name, "version": agent.version}

# ### 3. List Agent Versions -- verbatim
printed = io.StringIO()
try:
    with contextlib.redirect_stdout(printed):
        versions = client.agents.list_versions(agent_name="my-hosted-agent")
        for version in versions:
            print(f"Version: {version.version}, State: {version.state}")
    report["list_verbatim"] = {"ok": True, "printed": printed.getvalue()}
except Exception as exc:  # noqa: BLE001 - reported
    report["list_verbatim"] = {"ok": False, "printed": printed.getvalue(), "error": failure(exc)}

# ... and as it works in 2.0.0b3
report["list_fixed"] = []
report["list_errors"] = []
for version in client.agents.list_versions(agent_name="my-hosted-agent"):
    report["list_fixed"].append(f"Version: {version.version}, State: {version['status']}")
    report["list_errors"].append(version.get("error") and dict(version["error"]))

# ### 4. Delete Agent Version -- verbatim
try:
    client.agents.delete_version(
        agent_name="my-hosted-agent",
        version=agent.version
    )
    report["delete_verbatim"] = {"ok": True}
except Exception as exc:  # noqa: BLE001 - reported
    report["delete_verbatim"] = {"ok": False, "error": failure(exc)}

# The failed call never reached the service: the version is still there.
report["versions_after_verbatim_delete"] = [
    v.version for v in client.agents.list_versions(agent_name="my-hosted-agent")
]

# ... and as it works in 2.0.0b3
deleted = client.agents.delete_version(
    agent_name="my-hosted-agent",
    agent_version=agent.version
)
report["delete_fixed"] = {
    "object": deleted["object"], "name": deleted.name, "version": deleted.version, "deleted": deleted.deleted,
}
try:
    client.agents.get_version(agent_name="my-hosted-agent", agent_version=agent.version)
    report["get_after_delete"] = {"ok": True}
except Exception as exc:  # noqa: BLE001 - reported
    report["get_after_delete"] = {"ok": False, "error": failure(exc), "code": getattr(getattr(exc, "error", None), "code", None)}

print(json.dumps(report))
