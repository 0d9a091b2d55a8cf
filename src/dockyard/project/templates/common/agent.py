"""What {{name}} answers: the agent's own logic, kept apart from the hosting adapter (main.py).

It echoes, so the agent works offline and answers the same every time: `echo: <what you said>`.
The greeting word comes from AGENT_GREETING (agent.yaml sets it, `${AGENT_GREETING:-echo}`).

Plug a model in here. Inside Foundry (and dockyard) the container gets FOUNDRY_PROJECT_ENDPOINT and a
managed identity, so the project's models are one client away, for example:

    from azure.ai.projects.aio import AIProjectClient
    from azure.identity.aio import DefaultAzureCredential

    async def reply(text: str) -> str:
        async with DefaultAzureCredential() as credential, AIProjectClient(
            endpoint=os.environ["FOUNDRY_PROJECT_ENDPOINT"], credential=credential
        ) as project:
            openai = project.get_openai_client()
            answer = await openai.responses.create(model=os.environ["MODEL_NAME"], input=text)
            return answer.output_text

(add azure-ai-projects and openai, pinned, to requirements.txt, and MODEL_NAME to agent.yaml).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator


async def reply(text: str) -> str:
    """The whole answer to `text`."""
    greeting = os.environ.get("AGENT_GREETING", "echo")
    return f"{greeting}: {text}"


async def words(text: str) -> AsyncIterator[str]:
    """The answer in word-sized pieces, the way a model streams tokens: each one is an event when the caller
    asks for a stream."""
    answer = await reply(text)
    pieces = answer.split(" ")
    for index, piece in enumerate(pieces):
        yield piece if index == len(pieces) - 1 else piece + " "
        await asyncio.sleep(0)
