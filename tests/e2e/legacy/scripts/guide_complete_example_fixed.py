"""The guide's "Complete Example" with its one defect corrected: `agent.state` -> `agent["status"]`.

In azure-ai-projects 2.0.0b3 `AgentVersionDetails` has no `state` attribute, and the service's
`status` field is not a model attribute either: it is reachable only as `agent["status"]`.
The guide's own prints are kept; the last stdout line is a JSON summary for the test.
"""

import json
import os
from azure.identity import DefaultAzureCredential
from azure.ai.projects import AIProjectClient
from azure.ai.projects.models import (
    ImageBasedHostedAgentDefinition,
    ProtocolVersionRecord,
    AgentProtocol,
)

def create_hosted_agent():
    """Create a hosted agent with custom container image."""
    client = AIProjectClient(
        endpoint=os.environ["AZURE_AI_PROJECT_ENDPOINT"],
        credential=DefaultAzureCredential()
    )

    agent = client.agents.create_version(
        agent_name="data-processor-agent",
        definition=ImageBasedHostedAgentDefinition(
            container_protocol_versions=[
                ProtocolVersionRecord(
                    protocol=AgentProtocol.RESPONSES,
                    version="v1"
                )
            ],
            image="myregistry.azurecr.io/data-processor:v1.0",
            cpu="2",
            memory="4Gi",
            tools=[
                {"type": "code_interpreter"},
                {"type": "file_search"}
            ],
            environment_variables={
                "AZURE_AI_PROJECT_ENDPOINT": os.environ["AZURE_AI_PROJECT_ENDPOINT"],
                "MODEL_NAME": "gpt-4o-mini",
                "MAX_RETRIES": "3"
            }
        )
    )

    print(f"Created hosted agent: {agent.name}")
    print(f"Version: {agent.version}")
    print(f"State: {agent['status']}")

    return agent

if __name__ == "__main__":
    agent = create_hosted_agent()
    definition = agent.definition
    print(json.dumps({
        "name": agent.name,
        "version": agent.version,
        "id": agent.id,
        "status": agent["status"],
        "has_state_attribute": hasattr(agent, "state"),
        "definition_type": type(definition).__name__,
        "image": definition["image"],  # 2.0.0b3 reads "hosted" back as HostedAgentDefinition, which has no `image` attribute
        "cpu": definition.cpu,
        "memory": definition.memory,
        "protocols": [[p.protocol, p.version] for p in definition.container_protocol_versions],
        "tools": [dict(tool) for tool in definition.tools],
        "environment_variables": dict(definition.environment_variables),
        "definition_keys": sorted(agent["definition"].keys()),
    }))
