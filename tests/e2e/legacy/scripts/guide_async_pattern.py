"""The guide's "Async Pattern", verbatim, plus the `asyncio.run(...)` the guide leaves to the reader.

Run as its own process after `eval "$(dockyard env)"`: aiohttp builds its TLS context when first used,
from the environment the process started with, exactly as in a real shell.
"""

import os
from azure.identity.aio import DefaultAzureCredential
from azure.ai.projects.aio import AIProjectClient
from azure.ai.projects.models import (
    ImageBasedHostedAgentDefinition,
    ProtocolVersionRecord,
    AgentProtocol,
)

async def create_hosted_agent_async():
    """Create a hosted agent asynchronously."""
    async with DefaultAzureCredential() as credential:
        async with AIProjectClient(
            endpoint=os.environ["AZURE_AI_PROJECT_ENDPOINT"],
            credential=credential
        ) as client:
            agent = await client.agents.create_version(
                agent_name="async-agent",
                definition=ImageBasedHostedAgentDefinition(
                    container_protocol_versions=[
                        ProtocolVersionRecord(
                            protocol=AgentProtocol.RESPONSES,
                            version="v1"
                        )
                    ],
                    image="myregistry.azurecr.io/async-agent:latest",
                    cpu="1",
                    memory="2Gi"
                )
            )
            return agent


# --- not in the guide: run it and report what came back -------------------------------------------
if __name__ == "__main__":
    import asyncio
    import json

    agent = asyncio.run(create_hosted_agent_async())
    print(json.dumps({
        "name": agent.name,
        "version": agent.version,
        "status": agent["status"],
        "definition_type": type(agent.definition).__name__,
        "kind": agent.definition.kind,
        "image": agent.definition["image"],  # read back as HostedAgentDefinition: no `image` attribute
        "cpu": agent.definition.cpu,
        "memory": agent.definition.memory,
        "protocols": [[p.protocol, p.version] for p in agent.definition.container_protocol_versions],
    }))
