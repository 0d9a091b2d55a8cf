"""The async clients of the newest SDK, run as a fresh process after `eval "$(dockyard env)"`.

A separate process because aiohttp builds its TLS context when first imported: in a real shell the
environment is set before Python starts, and this reproduces exactly that.
"""

import asyncio
import json
import os
import sys

from azure.ai.projects.aio import AIProjectClient
from azure.ai.projects.models import ContainerConfiguration, HostedAgentDefinition, ProtocolVersionRecord
from azure.identity.aio import DefaultAzureCredential


async def main(name: str) -> dict:
    definition = HostedAgentDefinition(
        cpu="1",
        memory="2Gi",
        container_configuration=ContainerConfiguration(image="myregistry.azurecr.io/async-agent:v1"),
        protocol_versions=[ProtocolVersionRecord(protocol="responses", version="v1")],
    )
    async with DefaultAzureCredential() as credential:
        async with AIProjectClient(endpoint=os.environ["AZURE_AI_PROJECT_ENDPOINT"], credential=credential) as client:
            created = await client.agents.create_version(agent_name=name, definition=definition)
            await client.agents.create_version(agent_name=name, definition=definition)
            listed = [v.version async for v in client.agents.list_versions(agent_name=name, limit=1)]
            agent = await client.agents.get(agent_name=name)
            deleted = await client.agents.delete(agent_name=name)
            return {
                "created": created.version,
                "status": created.status,
                "listed": listed,
                "latest": agent.versions.latest.version,
                "deleted": deleted.deleted,
            }


print(json.dumps(asyncio.run(main(sys.argv[1]))))
