"""azure-ai-projects 2.0.0b3's async client (azure.ai.projects.aio + azure.identity.aio) against dockyard.

A process of its own, started after `eval "$(dockyard env)"`: aiohttp builds its TLS context from the
environment the process started with. Prints one JSON report.
"""

import asyncio
import json
import os
import sys

from azure.ai.projects.aio import AIProjectClient
from azure.ai.projects.models import AgentProtocol, ImageBasedHostedAgentDefinition, ProtocolVersionRecord
from azure.core.exceptions import ResourceNotFoundError
from azure.identity.aio import DefaultAzureCredential


def definition(tag):
    return ImageBasedHostedAgentDefinition(
        container_protocol_versions=[ProtocolVersionRecord(protocol=AgentProtocol.RESPONSES, version="v1")],
        image=f"myregistry.azurecr.io/async-legacy:{tag}",
        cpu="1",
        memory="2Gi",
    )


async def main(name):
    out = {}
    async with DefaultAzureCredential() as credential:
        async with AIProjectClient(endpoint=os.environ["AZURE_AI_PROJECT_ENDPOINT"], credential=credential) as client:
            first = await client.agents.create_version(agent_name=name, definition=definition("v1"))
            second = await client.agents.create_version(agent_name=name, definition=definition("v2"))
            third = await client.agents.create_version(agent_name=name, definition=definition("v3"))
            out["created"] = [first.version, second.version, third.version]
            out["status"] = first["status"]
            out["listed_desc"] = [v.version async for v in client.agents.list_versions(agent_name=name, limit=1)]
            out["listed_asc"] = [
                v.version async for v in client.agents.list_versions(agent_name=name, limit=2, order="asc")
            ]
            fetched = await client.agents.get_version(agent_name=name, agent_version="2")
            out["get_version_image"] = fetched.definition["image"]
            agent = await client.agents.get(agent_name=name)
            out["latest"] = agent.versions.latest.version
            out["latest_image"] = agent.versions.latest.definition["image"]
            out["in_list"] = name in [a.name async for a in client.agents.list(limit=2)]
            deleted_version = await client.agents.delete_version(agent_name=name, agent_version="1")
            out["deleted_version"] = [deleted_version.version, deleted_version.deleted]
            deleted = await client.agents.delete(agent_name=name)
            out["deleted"] = [deleted.name, deleted.deleted]
            try:
                await client.agents.get(agent_name=name)
                out["get_after_delete"] = None
            except ResourceNotFoundError as exc:
                out["get_after_delete"] = [type(exc).__name__, exc.error.code if exc.error else None]
    return out


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(sys.argv[1]))))
