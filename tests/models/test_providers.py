"""Where each provider kind's calls go and how they authenticate, and the relay's answers, on a real
llama.cpp server (and the fake vendor for a rate limit and a cut stream)."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import aiohttp
import pytest
from support.fake_vendor import FakeVendor
from support.llama import LLAMA_KEY, LlamaServer
from support.process import free_port

from dockyard.domain.deployments import AuthKind, ProviderKind
from dockyard.domain.errors import BadRequest
from dockyard.models.providers import Operation, check_operation, key_headers, operation_url, rewrite_model
from dockyard.models.relay import model_timeout, relay
from dockyard.models.upstreams import ModelKind, Upstream


def upstream(kind: ProviderKind = ProviderKind.OPENAI, base_url: str = "http://127.0.0.1:9/v1", **kw: Any) -> Upstream:
    return Upstream(deployment=kw.pop("deployment", "gpt-4o-mini"), connection=kw.pop("connection", "conn"),
                    kind=kind, base_url=base_url, model=kw.pop("model", "upstream-model"), **kw)


@pytest.mark.parametrize("operation, path", [(Operation.CHAT_COMPLETIONS, "chat/completions"),
                                             (Operation.RESPONSES, "responses"), (Operation.EMBEDDINGS, "embeddings"),
                                             (Operation.MODELS, "models"), (Operation.COMPLETIONS, "completions")])
def test_operation_urls_for_each_kind(operation: Operation, path: str) -> None:
    assert operation_url(upstream(base_url="http://h:1/v1/"), operation) == f"http://h:1/v1/{path}"
    assert operation_url(upstream(ProviderKind.LOCAL, "http://127.0.0.1:5/v1"), operation) == f"http://127.0.0.1:5/v1/{path}"
    azure = upstream(ProviderKind.AZURE_OPENAI, "https://r.openai.azure.com")
    assert operation_url(azure, operation) == f"https://r.openai.azure.com/openai/v1/{path}"


def test_calls_a_known_model_cannot_answer_are_refused_before_they_leave() -> None:
    embeddings = upstream(ProviderKind.LOCAL, deployment="local-embeddings", model_kind=ModelKind.EMBEDDINGS)
    chat = upstream(ProviderKind.LOCAL, deployment="local", model_kind=ModelKind.CHAT)
    check_operation(embeddings, Operation.EMBEDDINGS, {"input": "x", "encoding_format": "base64"})
    for operation in (Operation.CHAT_COMPLETIONS, Operation.COMPLETIONS, Operation.RESPONSES):
        check_operation(chat, operation, {})
        with pytest.raises(BadRequest) as refused:
            check_operation(embeddings, operation, {})
        assert refused.value.code == "OperationNotSupported" and refused.value.param == "model"
        assert "'local-embeddings' is an embedding model" in refused.value.message
    with pytest.raises(BadRequest) as no_vectors:
        check_operation(chat, Operation.EMBEDDINGS, {"input": "x"})
    assert no_vectors.value.code == "OperationNotSupported" and "local-embeddings" in no_vectors.value.message
    # The local server cannot shorten its vectors (it would answer full ones as if it had); OpenAI's can.
    with pytest.raises(BadRequest) as shortened:
        check_operation(embeddings, Operation.EMBEDDINGS, {"input": "x", "dimensions": 64})
    assert shortened.value.code == "DimensionsNotSupported" and shortened.value.param == "dimensions"
    remote = upstream(model_kind=ModelKind.EMBEDDINGS)
    check_operation(remote, Operation.EMBEDDINGS, {"input": "x", "dimensions": 64})
    # A remote deployment dockyard knows nothing about: its upstream answers for itself.
    for operation in (Operation.EMBEDDINGS, Operation.CHAT_COMPLETIONS, Operation.RESPONSES):
        check_operation(upstream(), operation, {"dimensions": 64})


def test_keys_travel_as_each_provider_expects() -> None:
    assert key_headers(upstream()) == {}
    assert key_headers(upstream(auth=AuthKind.API_KEY, api_key="sk-1")) == {"authorization": "Bearer sk-1"}
    azure = upstream(ProviderKind.AZURE_OPENAI, "https://r.openai.azure.com", auth=AuthKind.API_KEY, api_key="k")
    assert key_headers(azure) == {"api-key": "k"}
    # Entra tokens come from dockyard's own credential at call time (EntraTokens), never from the connection.
    assert key_headers(upstream(ProviderKind.AZURE_OPENAI, "https://r", auth=AuthKind.ENTRA)) == {}


def test_the_body_names_the_upstream_model() -> None:
    body = {"model": "gpt-4o-mini", "messages": [], "stream": True}
    assert json.loads(rewrite_model(body, upstream())) == {**body, "model": "upstream-model"}
    assert body["model"] == "gpt-4o-mini"  # the caller's dict is left alone


# ---- the relay --------------------------------------------------------------------------------------

async def call(target: Upstream, operation: Operation, body: dict[str, Any]) -> tuple[int, dict[str, str], bytes]:
    async with aiohttp.ClientSession(skip_auto_headers=("User-Agent", "Accept-Encoding")) as client:
        headers = {"content-type": "application/json", **key_headers(target)}
        answer = await relay(client, target, operation, "POST", operation_url(target, operation), headers=headers,
                             content=rewrite_model(body, target), timeout=model_timeout(60), request_id="test")
        if hasattr(answer, "body_iterator"):
            content = b"".join([chunk async for chunk in answer.body_iterator])  # type: ignore[attr-defined]
        else:
            content = bytes(answer.body)
        return answer.status_code, dict(answer.headers), content


CHAT = {"model": "d", "messages": [{"role": "user", "content": "Say hi."}], "max_tokens": 8}


def test_nothing_listening_is_a_quick_502_naming_deployment_and_connection() -> None:
    started = time.monotonic()
    status, _, content = asyncio.run(call(upstream(base_url=f"http://127.0.0.1:{free_port()}/v1"),
                                          Operation.CHAT_COMPLETIONS, CHAT))
    assert time.monotonic() - started < 2
    error = json.loads(content)["error"]
    assert status == 502 and error["code"] == "ModelUnavailable"
    assert "'gpt-4o-mini'" in error["message"] and "'conn'" in error["message"]


def test_a_rate_limit_is_passed_on_with_retry_after(vendor: FakeVendor) -> None:
    status, headers, content = asyncio.run(call(upstream(base_url=vendor.base_url, model="rate-limited"),
                                                Operation.CHAT_COMPLETIONS, CHAT))
    assert status == 429 and headers["retry-after"] == "7" and headers["x-ratelimit-remaining-requests"] == "0"
    assert json.loads(content)["error"]["code"] == "rate_limit_exceeded"


@pytest.mark.parametrize("operation", [Operation.CHAT_COMPLETIONS, Operation.RESPONSES])
def test_a_stream_cut_mid_answer_ends_with_an_error_event(vendor: FakeVendor, operation: Operation) -> None:
    status, _, content = asyncio.run(call(upstream(base_url=vendor.base_url, model="cut-stream"), operation,
                                          {**CHAT, "stream": True}))
    assert status == 200
    last = content.decode().strip().split("\n\n")[-1]
    if operation is Operation.RESPONSES:
        assert last.startswith("event: error\n")
        data = json.loads(last.split("data: ", 1)[1])
        assert data["type"] == "error" and data["code"] == "ModelStreamInterrupted" and data["sequence_number"] == 2
    else:
        data = json.loads(last.split("data: ", 1)[1])
        assert data["error"]["code"] == "ModelStreamInterrupted" and "incomplete" in data["error"]["message"]


def test_a_real_completion_is_relayed_whole(llama: LlamaServer) -> None:
    status, headers, content = asyncio.run(call(upstream(base_url=llama.base_url, model=llama.model),
                                                Operation.CHAT_COMPLETIONS, CHAT))
    assert status == 200, content
    assert json.loads(content)["choices"][0]["message"]["content"]


def test_a_real_stream_is_relayed_event_by_event(llama: LlamaServer) -> None:
    status, headers, content = asyncio.run(call(upstream(base_url=llama.base_url, model=llama.model),
                                                Operation.CHAT_COMPLETIONS, {**CHAT, "stream": True}))
    assert status == 200 and headers["content-type"].startswith("text/event-stream")
    assert content.rstrip().endswith(b"data: [DONE]")


def test_the_right_key_is_sent_and_a_wrong_one_is_named_after_the_connection(keyed_llama: LlamaServer) -> None:
    right = upstream(base_url=keyed_llama.base_url, model=keyed_llama.model, auth=AuthKind.API_KEY,
                     api_key=LLAMA_KEY)
    assert asyncio.run(call(right, Operation.CHAT_COMPLETIONS, CHAT))[0] == 200
    wrong = upstream(base_url=keyed_llama.base_url, model=keyed_llama.model, auth=AuthKind.API_KEY,
                     api_key="wrong-key-123", connection="my-llama")
    status, _, content = asyncio.run(call(wrong, Operation.CHAT_COMPLETIONS, CHAT))
    error = json.loads(content)["error"]
    assert status == 401 and error["code"] == "UpstreamAuthenticationFailed"
    assert "'my-llama'" in error["message"] and "wrong-key-123" not in content.decode()
