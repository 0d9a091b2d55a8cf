"""azure-ai-projects 2.0.0b3's OpenAI client calling a model deployment through the project, JSON on stdout.

    python model_inference.py DEPLOYMENT

2.0.0b3's `get_openai_client()` points the openai client at `{endpoint}/openai` with
api-version 2025-11-15-preview on every call (2.x uses `{endpoint}/openai/v1` and none); the request
names a model and no agent, so dockyard serves it from the deployment.
"""

import json
import os
import sys
from urllib.parse import urlsplit

from azure.ai.projects import AIProjectClient
from azure.identity import DefaultAzureCredential

deployment = sys.argv[1]
project = AIProjectClient(endpoint=os.environ["AZURE_AI_PROJECT_ENDPOINT"], credential=DefaultAzureCredential())
client = project.get_openai_client()

answer = client.responses.create(model=deployment, input="Name one primary colour.", max_output_tokens=24)
streamed = []
with client.responses.stream(model=deployment, input="Count from one to five.", max_output_tokens=32) as stream:
    for event in stream:
        if event.type == "response.output_text.delta":
            streamed.append(event.delta)
chat = client.chat.completions.create(model=deployment, max_tokens=16,
                                      messages=[{"role": "user", "content": "Say hello."}])
print(json.dumps({
    "base_url": str(client.base_url),
    "base_path": urlsplit(str(client.base_url)).path,
    "query": dict(client._custom_query or {}),  # noqa: SLF001 - which api-version the client sends
    "response_text": answer.output_text,
    "response_model": answer.model,
    "stream_deltas": len(streamed),
    "stream_text": "".join(streamed),
    "chat_text": chat.choices[0].message.content,
}))
