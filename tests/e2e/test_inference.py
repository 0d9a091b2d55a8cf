"""The project's model endpoint, end to end: a real `dockyard up`, real llama.cpp servers running the real
Gemma 3 270M, and the clients agents use (openai, azure-ai-projects 2.x, AzureOpenAI, LangChain).

Deployments are added as a user adds them (`dockyard model add`). The fake vendor (tests/support/
fake_vendor.py) stands in only for a rate limit and a stream cut mid-answer.
"""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from support.fake_vendor import FakeVendor
from support.llama import LLAMA_KEY, LlamaServer
from support.process import DockyardProcess, dockyard_command, free_port

pytestmark = [pytest.mark.e2e, pytest.mark.local_model]

COGNITIVE = "https://cognitiveservices.azure.com"
FOUNDRY = "https://ai.azure.com"
WEATHER_TOOL = {"type": "function", "name": "get_weather", "description": "The weather in a city.",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}
CHAT_WEATHER_TOOL = {"type": "function", "function": {k: v for k, v in WEATHER_TOOL.items() if k != "type"}}


def model_add(server: DockyardProcess, *args: str, key: str | None = None) -> None:
    result = subprocess.run(dockyard_command("model", "add", *args, "--home", str(server.home)), input=key,
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, llama: LlamaServer, keyed_llama: LlamaServer,
           vendor: FakeVendor) -> Iterator[DockyardProcess]:
    dockyard = DockyardProcess(home=tmp_path_factory.mktemp("inference") / "home", extra_args=("--no-engine",)).start()
    model_add(dockyard, "gpt-4o-mini", "--base-url", llama.base_url, "--model", llama.model)
    model_add(dockyard, "chat-only", "--base-url", llama.base_url, "--model", llama.model, "--chat-only")
    model_add(dockyard, "keyed", "--base-url", keyed_llama.base_url, "--model", keyed_llama.model, "--api-key-stdin",
              key=LLAMA_KEY + "\n")
    model_add(dockyard, "wrong-key", "--base-url", keyed_llama.base_url, "--model", keyed_llama.model,
              "--api-key-stdin", key="a-wrong-key-4242\n")
    model_add(dockyard, "rate-limited", "--base-url", vendor.base_url)
    model_add(dockyard, "cut-stream", "--base-url", vendor.base_url)
    model_add(dockyard, "down", "--base-url", f"http://127.0.0.1:{free_port()}/v1")
    yield dockyard
    dockyard.stop()


@pytest.fixture(scope="module")
def env(server: DockyardProcess) -> Iterator[dict[str, str]]:
    """This process's environment as after `eval "$(dockyard env)"`, for the module."""
    values = server.env()
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    yield values
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


def ca(path: str | os.PathLike[str]) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(path))


def token_for(env: dict[str, str], resource: str, identity_header: str | None = None) -> str:
    answer = httpx.get(env["IDENTITY_ENDPOINT"], params={"api-version": "2019-08-01", "resource": resource},
                       headers={"X-IDENTITY-HEADER": identity_header or env["IDENTITY_HEADER"]},
                       verify=ca(env["REQUESTS_CA_BUNDLE"]))
    answer.raise_for_status()
    return str(answer.json()["access_token"])


@pytest.fixture(scope="module")
def client(server: DockyardProcess, env: dict[str, str]) -> openai.OpenAI:
    """The openai client on the project's /openai/v1, as `get_openai_client()` makes it, no retries."""
    return openai.OpenAI(base_url=f"{server.endpoint}/openai/v1", api_key=token_for(env, FOUNDRY), max_retries=0)


@pytest.fixture(scope="module")
def http(env: dict[str, str]) -> Iterator[httpx.Client]:
    with httpx.Client(verify=ca(env["REQUESTS_CA_BUNDLE"]), timeout=120,
                      headers={"Authorization": f"Bearer {token_for(env, FOUNDRY)}"}) as session:
        yield session


# ---- the openai client on {project}/openai/v1 ---------------------------------------------------------

@pytest.mark.parametrize("deployment", ["gpt-4o-mini", "chat-only"])
def test_responses_plain_and_streamed(client: openai.OpenAI, deployment: str) -> None:
    """Straight to llama.cpp's /v1/responses, and translated to Chat Completions for a chat-only connection."""
    response = client.responses.create(model=deployment, input="Say hello.", max_output_tokens=16)
    assert response.status in ("completed", "incomplete") and response.output_text.strip()
    assert response.usage is not None and response.usage.output_tokens > 0
    events = list(client.responses.create(model=deployment, input="Count: one, two,", max_output_tokens=12,
                                          stream=True))
    kinds = [event.type for event in events]
    assert kinds[0] == "response.created" and kinds[-1] in ("response.completed", "response.incomplete")
    deltas = "".join(event.delta for event in events if event.type == "response.output_text.delta")
    assert deltas and events[-1].response.output_text == deltas


def test_chat_completions_plain_and_streamed(client: openai.OpenAI) -> None:
    messages = [{"role": "user", "content": "Say hello."}]
    completion = client.chat.completions.create(model="gpt-4o-mini", messages=messages, max_tokens=16)
    assert completion.choices[0].message.content and completion.usage is not None
    chunks = list(client.chat.completions.create(model="gpt-4o-mini", messages=messages, max_tokens=16, stream=True,
                                                 stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert len(chunks) > 2 and text and chunks[-1].usage is not None


@pytest.mark.parametrize("deployment", ["gpt-4o-mini", "chat-only"])
def test_a_function_call_forced_with_tool_choice(client: openai.OpenAI, deployment: str) -> None:
    # llama.cpp takes only tool_choice strings; a named function is what dockyard's translation sends as one.
    named: Any = {"type": "function", "name": "get_weather"} if deployment == "chat-only" else "required"
    response = client.responses.create(model=deployment, input="What is the weather in Paris?", tools=[WEATHER_TOOL],
                                       tool_choice=named, max_output_tokens=64, temperature=0)
    [call] = [item for item in response.output if item.type == "function_call"][:1]
    assert call.name == "get_weather" and isinstance(json.loads(call.arguments), dict)
    events = list(client.responses.create(model=deployment, input="Weather in Lyon?", tools=[WEATHER_TOOL],
                                          tool_choice="required", max_output_tokens=64, temperature=0, stream=True))
    # Items done, which both llama.cpp's own Responses stream and dockyard's translation send (llama.cpp's
    # has no function_call_arguments.done and no sequence numbers; relayed as it is).
    calls = [e.item for e in events if e.type == "response.output_item.done" and e.item.type == "function_call"]
    assert calls and all(isinstance(json.loads(call.arguments), dict) for call in calls)
    completion = client.chat.completions.create(
        model=deployment, messages=[{"role": "user", "content": "Weather in Rome?"}], tools=[CHAT_WEATHER_TOOL],
        tool_choice="required", max_tokens=64, temperature=0)
    assert completion.choices[0].message.tool_calls[0].function.name == "get_weather"


def test_models_lists_the_deployments(client: openai.OpenAI) -> None:
    names = {model.id for model in client.models.list()}
    assert {"gpt-4o-mini", "chat-only", "keyed"} <= names
    assert client.models.retrieve("keyed").id == "keyed"


def test_the_connections_key_is_sent(client: openai.OpenAI) -> None:
    completion = client.chat.completions.create(model="keyed", messages=[{"role": "user", "content": "Hi"}],
                                                max_tokens=4)
    assert completion.choices[0].message.content is not None


# ---- the SDKs and clients agents use ------------------------------------------------------------------

def test_azure_ai_projects_get_openai_client(server: DockyardProcess, env: dict[str, str]) -> None:
    from azure.ai.projects import AIProjectClient
    from azure.identity import DefaultAzureCredential

    with AIProjectClient(endpoint=server.endpoint, credential=DefaultAzureCredential()) as project:
        model = project.get_openai_client()
        assert str(model.base_url).rstrip("/") == f"{server.endpoint}/openai/v1"
        assert model.responses.create(model="gpt-4o-mini", input="Say hi.", max_output_tokens=8).output_text
        completion = model.chat.completions.create(model="gpt-4o-mini", max_tokens=8,
                                                   messages=[{"role": "user", "content": "Say hi."}])
        assert completion.choices[0].message.content


@pytest.mark.parametrize("at", ["host", "project"])
def test_azure_openai_client_on_the_deployments_path(server: DockyardProcess, env: dict[str, str], at: str) -> None:
    """AzureOpenAI(azure_endpoint=…): /openai/deployments/{d}/chat/completions?api-version=…, Entra token for
    cognitiveservices, as Agent Framework's Azure OpenAI chat completion client sends."""
    from azure.identity import DefaultAzureCredential, get_bearer_token_provider

    provider = get_bearer_token_provider(DefaultAzureCredential(), f"{COGNITIVE}/.default")
    azure = openai.AzureOpenAI(azure_endpoint=server.url if at == "host" else server.endpoint,
                               api_version="2024-12-01-preview", azure_ad_token_provider=provider, max_retries=0)
    completion = azure.chat.completions.create(model="gpt-4o-mini", max_tokens=8,
                                               messages=[{"role": "user", "content": "Say hi."}])
    assert completion.choices[0].message.content
    assert azure.responses.create(model="gpt-4o-mini", input="Say hi.", max_output_tokens=8).output_text
    # A client configured with a key sends it as `api-key`: a dockyard token there works too.
    keyed = openai.AzureOpenAI(azure_endpoint=server.url, api_version="2024-10-21", api_key=token_for(env, COGNITIVE),
                               max_retries=0)
    assert keyed.chat.completions.create(model="gpt-4o-mini", max_tokens=4,
                                         messages=[{"role": "user", "content": "Hi"}]).choices


def test_azure_openai_v1_base_url_with_api_version_preview(server: DockyardProcess, env: dict[str, str]) -> None:
    """Agent Framework's OpenAIChatClient on an Azure endpoint: {endpoint}/openai/v1/responses?api-version=preview."""
    azure = openai.AzureOpenAI(base_url=f"{server.url}/openai/v1/", api_version="preview",
                               azure_ad_token=token_for(env, COGNITIVE), max_retries=0)
    assert azure.responses.create(model="gpt-4o-mini", input="Say hi.", max_output_tokens=8).output_text
    completion = azure.chat.completions.create(model="gpt-4o-mini", max_tokens=8,
                                               messages=[{"role": "user", "content": "Say hi."}])
    assert completion.choices[0].message.content


def test_langchain_azure_chat_openai_at_the_host_root(server: DockyardProcess, env: dict[str, str]) -> None:
    """AzureChatOpenAI(azure_endpoint=<host>): {host}/openai/deployments/{d}/chat/completions, no model in the body."""
    from langchain_openai import AzureChatOpenAI

    llm = AzureChatOpenAI(azure_endpoint=server.url, azure_deployment="gpt-4o-mini", api_version="2024-12-01-preview",
                          azure_ad_token_provider=lambda: token_for(env, FOUNDRY), max_tokens=16, max_retries=0)
    assert llm.invoke("Say hello.").content
    assert "".join(str(chunk.content) for chunk in llm.stream("Say hello."))


def test_legacy_sdk_base_with_its_api_version(server: DockyardProcess, http: httpx.Client) -> None:
    """2.0.0b3's get_openai_client(): {project}/openai/responses?api-version=2025-11-15-preview, naming a model."""
    answer = http.post(f"{server.endpoint}/openai/responses", params={"api-version": "2025-11-15-preview"},
                       json={"model": "gpt-4o-mini", "input": "Say hi.", "max_output_tokens": 8})
    assert answer.status_code == 200, answer.text
    assert answer.json()["object"] == "response"
    chat = http.post(f"{server.endpoint}/openai/chat/completions", params={"api-version": "2025-11-15-preview"},
                     json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4})
    assert chat.status_code == 200, chat.text


def test_an_agents_identity_may_call_models_but_not_manage_agents(server: DockyardProcess,
                                                                  env: dict[str, str]) -> None:
    from dockyard.home import Home
    from dockyard.identity.agents import agent_identity_header

    header = agent_identity_header(Home(server.home).identity_secret(), "some-version-uid")
    token = token_for(env, COGNITIVE, identity_header=header)
    with httpx.Client(verify=ca(env["REQUESTS_CA_BUNDLE"]), timeout=120,
                      headers={"Authorization": f"Bearer {token}"}) as agent:
        answer = agent.post(f"{server.endpoint}/openai/v1/chat/completions",
                            json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hi"}],
                                  "max_tokens": 4})
        assert answer.status_code == 200, answer.text
        agent_token = token_for(env, FOUNDRY, identity_header=header)
        refused = agent.get(f"{server.endpoint}/agents", params={"api-version": "v1"},
                            headers={"Authorization": f"Bearer {agent_token}"})
        assert refused.status_code == 403 and refused.json()["error"]["code"] == "AgentIdentityNotAllowed"


def test_no_token_or_a_foreign_audience_is_refused(server: DockyardProcess, env: dict[str, str]) -> None:
    url = f"{server.endpoint}/openai/v1/chat/completions"
    body = {"model": "gpt-4o-mini", "messages": []}
    bare = httpx.post(url, json=body, verify=ca(env["REQUESTS_CA_BUNDLE"]))
    assert bare.status_code == 401 and bare.json()["error"]["code"] == "MissingToken"
    other = httpx.post(url, json=body, verify=ca(env["REQUESTS_CA_BUNDLE"]),
                       headers={"Authorization": f"Bearer {token_for(env, 'https://management.azure.com')}"})
    assert other.status_code == 401 and COGNITIVE in other.json()["error"]["message"]


# ---- bad input and faults -----------------------------------------------------------------------------

def test_an_upstream_that_is_down_is_a_quick_502(client: openai.OpenAI) -> None:
    started = time.monotonic()
    with pytest.raises(openai.APIStatusError) as failed:
        client.chat.completions.create(model="down", messages=[{"role": "user", "content": "Hi"}])
    assert time.monotonic() - started < 5
    assert failed.value.status_code == 502 and failed.value.body["code"] == "ModelUnavailable"
    assert "'down'" in failed.value.message


def test_a_rate_limit_is_passed_on_with_retry_after(server: DockyardProcess, client: openai.OpenAI,
                                                    http: httpx.Client) -> None:
    with pytest.raises(openai.RateLimitError) as limited:
        client.responses.create(model="rate-limited", input="Hi")
    assert limited.value.response.headers["retry-after"] == "7"
    assert limited.value.body["code"] == "rate_limit_exceeded"
    raw = http.post(f"{server.url}/openai/deployments/rate-limited/chat/completions",
                    params={"api-version": "2024-10-21"}, json={"messages": []})
    assert raw.status_code == 429 and raw.headers["retry-after"] == "7"


def test_a_stream_cut_mid_answer_ends_with_an_error(client: openai.OpenAI) -> None:
    events = list(client.responses.create(model="cut-stream", input="Hi", stream=True))
    assert events[0].type == "response.created"
    assert events[-1].type == "error" and events[-1].code == "ModelStreamInterrupted"
    with pytest.raises(openai.APIError, match="incomplete"):
        list(client.chat.completions.create(model="cut-stream", messages=[{"role": "user", "content": "Hi"}],
                                            stream=True))


def test_a_body_over_the_limit_is_413(server: DockyardProcess, http: httpx.Client) -> None:
    huge = b'{"model": "gpt-4o-mini", "input": "' + b"x" * (17 * 1024 * 1024) + b'"}'
    for path in ("/openai/v1/responses", "/openai/v1/chat/completions"):
        answer = http.post(f"{server.endpoint}{path}", content=huge, headers={"content-type": "application/json"})
        assert answer.status_code == 413, path


def test_an_unknown_model_is_404_listing_the_deployments(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as missing:
        client.responses.create(model="gpt-5", input="Hi")
    assert missing.value.body["code"] == "DeploymentNotFound"
    assert "gpt-4o-mini" in missing.value.message and "dockyard model add" in missing.value.message


def test_a_wrong_key_is_named_after_its_connection(client: openai.OpenAI) -> None:
    with pytest.raises(openai.AuthenticationError) as refused:
        client.chat.completions.create(model="wrong-key", messages=[{"role": "user", "content": "Hi"}])
    error: Any = refused.value.body
    assert error["code"] == "UpstreamAuthenticationFailed" and "'wrong-key'" in error["message"]
    assert "a-wrong-key-4242" not in json.dumps(error)


def test_dockyard_still_serves_after_the_faults(client: openai.OpenAI, server: DockyardProcess) -> None:
    assert client.responses.create(model="gpt-4o-mini", input="Hi", max_output_tokens=4).id
    assert "a-wrong-key-4242" not in server.logs()


def test_an_azure_openai_connection_with_entra_id(server: DockyardProcess, env: dict[str, str],
                                                  tmp_path_factory: pytest.TempPathFactory) -> None:
    """An Azure OpenAI connection that authenticates with dockyard's own Entra identity.

    No Azure tenant is reachable here, so the "Azure OpenAI resource" is the first dockyard: it serves
    Azure OpenAI's v1 surface at its root and accepts tokens for https://cognitiveservices.azure.com. The
    second dockyard runs with the first one's managed-identity exports, so its DefaultAzureCredential
    (App Service managed identity) gets such a token: the real azure-identity flow, end to end.
    """
    front_env = {**os.environ, **{name: env[name] for name in
                                  ("IDENTITY_ENDPOINT", "IDENTITY_HEADER", "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE")}}
    for name in ("AZURE_CLIENT_ID", "AZURE_TENANT_ID", "AZURE_CLIENT_SECRET", "AZURE_FEDERATED_TOKEN_FILE"):
        front_env.pop(name, None)
    front = DockyardProcess(home=tmp_path_factory.mktemp("entra") / "home", extra_args=("--no-engine",))
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(front_env)  # DockyardProcess starts dockyard with this process's environment
    try:
        front.start()
    finally:
        os.environ.clear()
        os.environ.update(saved)
    try:
        model_add(front, "azure-mini", "--azure-endpoint", server.url, "--entra", "--model", "gpt-4o-mini")
        front_token = httpx.get(f"{front.url}/msi/token", verify=ca(front.home / "tls" / "ca.pem"),
                                params={"api-version": "2019-08-01", "resource": FOUNDRY},
                                headers={"X-IDENTITY-HEADER": front.env()["IDENTITY_HEADER"]}).json()["access_token"]
        answer = httpx.post(f"{front.endpoint}/openai/v1/chat/completions", verify=ca(front.home / "tls" / "ca.pem"),
                            headers={"Authorization": f"Bearer {front_token}"}, timeout=120,
                            json={"model": "azure-mini", "messages": [{"role": "user", "content": "Hi"}],
                                  "max_tokens": 4})
        assert answer.status_code == 200, answer.text + front.logs()[-2000:]
        assert answer.json()["choices"][0]["message"]["content"] is not None
    finally:
        front.stop()
