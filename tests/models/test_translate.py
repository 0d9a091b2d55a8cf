"""Responses ↔ Chat Completions: requests, answers and event streams, checked against openai's own types.

The first half feeds the translator chunks of the shape Chat Completions servers send; the second
runs it against llama.cpp's real server and the real Gemma 3 270M, with streaming and forced function
calls. Every Response and every event produced is validated with `openai.types.responses`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from openai.types.responses import Response, ResponseStreamEvent
from pydantic import TypeAdapter
from support.llama import LlamaServer

from dockyard.domain.errors import BadRequest
from dockyard.models.translate import ChatChunks, ResponsesStream, chat_to_response, responses_to_chat

EVENT = TypeAdapter(ResponseStreamEvent)
WEATHER_TOOL = {"type": "function", "name": "get_weather", "description": "The weather in a city.",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}


def parse_events(raw: bytes) -> list[dict[str, Any]]:
    """SSE bytes as (event name, data) checked to agree, returned as the data objects."""
    events = []
    for block in raw.decode().split("\n\n"):
        if not block.strip():
            continue
        lines = dict(line.split(": ", 1) for line in block.splitlines())
        data = json.loads(lines["data"])
        assert lines["event"] == data["type"]
        events.append(data)
    return events


def validated(events: list[dict[str, Any]]) -> list[Any]:
    typed = [EVENT.validate_python(event) for event in events]
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    return typed


# ---- requests ---------------------------------------------------------------------------------------

def test_a_plain_request_becomes_messages_with_instructions_first() -> None:
    chat = responses_to_chat({"model": "m", "input": "Hi", "instructions": "Be brief.", "max_output_tokens": 20,
                              "temperature": 0.2, "store": True, "metadata": {"a": "b"}})
    assert chat == {"model": "m", "messages": [{"role": "system", "content": "Be brief."},
                                               {"role": "user", "content": "Hi"}],
                    "max_tokens": 20, "temperature": 0.2}


def test_a_conversation_with_function_calls_and_outputs_maps_to_tool_messages() -> None:
    chat = responses_to_chat({"model": "m", "tools": [WEATHER_TOOL],
                              "tool_choice": {"type": "function", "name": "get_weather"},
                              "text": {"format": {"type": "json_schema", "name": "w", "schema": {"type": "object"},
                                                  "strict": True}},
                              "input": [
        {"role": "developer", "content": "Use tools."},
        {"type": "message", "role": "user", "content": [
            {"type": "input_text", "text": "Weather in Paris?"},
            {"type": "input_image", "image_url": "data:image/png;base64,AA"}]},
        {"type": "function_call", "call_id": "c1", "name": "get_weather", "arguments": "{\"city\":\"Paris\"}"},
        {"type": "function_call", "call_id": "c2", "name": "get_weather", "arguments": "{\"city\":\"Lyon\"}"},
        {"type": "function_call_output", "call_id": "c1", "output": "sunny"},
        {"type": "function_call_output", "call_id": "c2", "output": [{"type": "input_text", "text": "rain"}]},
        {"type": "reasoning", "id": "rs_1", "summary": []},
        {"role": "assistant", "content": [{"type": "output_text", "text": "Sunny in Paris.", "annotations": []}]},
    ]})
    assert chat["messages"] == [
        {"role": "system", "content": "Use tools."},
        {"role": "user", "content": [{"type": "text", "text": "Weather in Paris?"},
                                     {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA"}}]},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}},
            {"id": "c2", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Lyon\"}"}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
        {"role": "tool", "tool_call_id": "c2", "content": "rain"},
        {"role": "assistant", "content": "Sunny in Paris."},
    ]
    assert chat["tools"] == [{"type": "function", "function": {
        "name": "get_weather", "parameters": WEATHER_TOOL["parameters"], "description": "The weather in a city."}}]
    assert chat["tool_choice"] == "required"  # the named function alone, required: what every server takes
    assert chat["response_format"] == {"type": "json_schema",
                                       "json_schema": {"name": "w", "schema": {"type": "object"}, "strict": True}}


@pytest.mark.parametrize("body, words", [
    ({"previous_response_id": "resp_1"}, "whole conversation"),
    ({"conversation": "conv_1"}, "whole conversation"),
    ({"tools": [{"type": "web_search"}]}, "'web_search'"),
    ({"input": [{"type": "item_reference", "id": "msg_1"}]}, "reference"),
])
def test_what_has_no_chat_completions_equivalent_is_refused_saying_so(body: dict[str, Any], words: str) -> None:
    with pytest.raises(BadRequest) as refused:
        responses_to_chat({"model": "m", "input": "x", **body})
    assert refused.value.code == "UnsupportedOnChatCompletionsDeployment"
    assert words in refused.value.message and "Chat Completions" in refused.value.message


def test_streaming_asks_for_usage() -> None:
    assert responses_to_chat({"model": "m", "input": "x", "stream": True})["stream_options"] == {"include_usage": True}


# ---- answers ----------------------------------------------------------------------------------------

def test_a_completion_with_text_tool_calls_and_usage_becomes_a_valid_response() -> None:
    chat = {"id": "x", "object": "chat.completion", "created": 1700000000, "model": "gemma",
            "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
                "role": "assistant", "content": "Checking.",
                "tool_calls": [{"id": "call_1", "type": "function",
                                "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]}}],
            "usage": {"prompt_tokens": 12, "completion_tokens": 5, "total_tokens": 17,
                      "prompt_tokens_details": {"cached_tokens": 4}}}
    response = Response.model_validate(chat_to_response(chat, {"model": "d", "tools": [WEATHER_TOOL]}))
    assert response.status == "completed" and response.model == "gemma" and response.output_text == "Checking."
    call = response.output[1]
    assert call.type == "function_call" and call.call_id == "call_1" and call.name == "get_weather"
    assert json.loads(call.arguments) == {"city": "Paris"}
    assert response.usage is not None and response.usage.input_tokens == 12 and response.usage.output_tokens == 5
    assert response.usage.input_tokens_details.cached_tokens == 4


def test_a_completion_cut_by_max_tokens_is_incomplete() -> None:
    chat = {"created": 1, "model": "g", "choices": [{"finish_reason": "length", "message": {"content": "Once"}}]}
    response = Response.model_validate(chat_to_response(chat, {"model": "d", "max_output_tokens": 1}))
    assert response.status == "incomplete" and response.incomplete_details is not None
    assert response.incomplete_details.reason == "max_output_tokens" and response.max_output_tokens == 1


def chunks(*deltas: dict[str, Any], finish: str = "stop", usage: bool = True) -> Iterator[dict[str, Any]]:
    for delta in deltas:
        yield {"model": "gemma", "choices": [{"index": 0, "delta": delta, "finish_reason": None}]}
    yield {"model": "gemma", "choices": [{"index": 0, "delta": {}, "finish_reason": finish}]}
    if usage:
        yield {"model": "gemma", "choices": [],
               "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}}


def run_stream(request: dict[str, Any], stream: Iterator[dict[str, Any]]) -> list[dict[str, Any]]:
    events = ResponsesStream(request)
    raw = events.start() + b"".join(events.chunk(c) for c in stream) + events.finish()
    return parse_events(raw)


def test_streamed_text_becomes_the_responses_event_sequence() -> None:
    events = run_stream({"model": "d"}, chunks({"role": "assistant", "content": ""}, {"content": "Hel"},
                                               {"content": "lo"}))
    typed = validated(events)
    assert [e["type"] for e in events] == [
        "response.created", "response.in_progress", "response.output_item.added", "response.content_part.added",
        "response.output_text.delta", "response.output_text.delta", "response.output_text.done",
        "response.content_part.done", "response.output_item.done", "response.completed"]
    done = typed[-1].response
    assert done.output_text == "Hello" and done.status == "completed" and done.usage.total_tokens == 5
    assert events[6]["text"] == "Hello"


def test_streamed_tool_calls_become_function_call_items_with_argument_deltas() -> None:
    stream = chunks(
        {"content": "Let me see."},
        {"tool_calls": [{"index": 0, "id": "call_a", "type": "function",
                         "function": {"name": "get_weather", "arguments": ""}}]},
        {"tool_calls": [{"index": 0, "function": {"arguments": "{\"city\":"}}]},
        {"tool_calls": [{"index": 0, "function": {"arguments": "\"Paris\"}"}}]},
        {"tool_calls": [{"index": 1, "id": "call_b", "type": "function",
                         "function": {"name": "get_weather", "arguments": "{\"city\":\"Lyon\"}"}}]},
        finish="tool_calls")
    events = run_stream({"model": "d", "tools": [WEATHER_TOOL]}, stream)
    typed = validated(events)
    kinds = [e["type"] for e in events]
    assert kinds.count("response.function_call_arguments.delta") == 3
    assert kinds.count("response.function_call_arguments.done") == 2
    # The text item is closed before the first call's item opens: items follow one another.
    assert kinds.index("response.output_text.done") < kinds.index("response.function_call_arguments.delta")
    final = typed[-1].response
    assert [item.type for item in final.output] == ["message", "function_call", "function_call"]
    assert [json.loads(item.arguments)["city"] for item in final.output[1:]] == ["Paris", "Lyon"]
    assert final.output[1].call_id == "call_a" and all(item.status == "completed" for item in final.output)


def test_a_stream_cut_short_by_max_tokens_ends_incomplete() -> None:
    events = run_stream({"model": "d"}, chunks({"content": "Once"}, finish="length", usage=False))
    assert events[-1]["type"] == "response.incomplete"
    validated(events)


def test_an_error_chunk_becomes_an_error_event() -> None:
    events = ResponsesStream({"model": "d"})
    raw = events.start() + events.chunk({"error": {"message": "context full", "code": 500}})
    parsed = parse_events(raw)
    assert parsed[-1]["type"] == "error" and parsed[-1]["message"] == "context full"
    validated(parsed)


def test_chat_chunks_are_parsed_across_arbitrary_byte_boundaries() -> None:
    raw = b"".join(b"data: " + json.dumps(c).encode() + b"\r\n\r\n" for c in chunks({"content": "x"}))
    raw += b"data: [DONE]\n\n"
    parser = ChatChunks()
    got = [c for i in range(0, len(raw), 7) for c in parser.feed(raw[i:i + 7])]
    assert len(got) == 3 and parser.done


# ---- against the real model -------------------------------------------------------------------------

def real_chat(llama: LlamaServer, request: dict[str, Any]) -> dict[str, Any]:
    chat = {**responses_to_chat(request), "model": llama.model}
    answer = httpx.post(f"{llama.base_url}/chat/completions", json=chat, timeout=120)
    assert answer.status_code == 200, answer.text
    return answer.json()


def real_stream(llama: LlamaServer, request: dict[str, Any]) -> list[dict[str, Any]]:
    chat = {**responses_to_chat(request), "model": llama.model}
    assert chat["stream"] and chat["stream_options"] == {"include_usage": True}
    events, parser = ResponsesStream(request), ChatChunks()
    raw = events.start()
    with httpx.stream("POST", f"{llama.base_url}/chat/completions", json=chat, timeout=120) as answer:
        assert answer.status_code == 200
        for piece in answer.iter_bytes():
            raw += b"".join(events.chunk(c) for c in parser.feed(piece))
    assert parser.done
    return parse_events(raw + events.finish())


def test_real_model_text_round_trip(llama: LlamaServer) -> None:
    request = {"model": "local", "input": "Say hello in one word.", "max_output_tokens": 16}
    response = Response.model_validate(chat_to_response(real_chat(llama, request), request))
    assert response.output_text.strip() and response.usage is not None and response.usage.output_tokens > 0


def test_real_model_forced_function_call(llama: LlamaServer) -> None:
    request = {"model": "local", "input": "What is the weather in Paris?", "tools": [WEATHER_TOOL],
               "tool_choice": {"type": "function", "name": "get_weather"}, "max_output_tokens": 64,
               "temperature": 0}
    response = Response.model_validate(chat_to_response(real_chat(llama, request), request))
    calls = [item for item in response.output if item.type == "function_call"]
    assert calls and calls[0].name == "get_weather" and isinstance(json.loads(calls[0].arguments), dict)


def test_real_model_streamed_text(llama: LlamaServer) -> None:
    events = real_stream(llama, {"model": "local", "input": "Count: one, two,", "stream": True,
                                            "max_output_tokens": 12})
    typed = validated(events)
    deltas = "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta")
    final = typed[-1].response
    assert deltas and final.output_text == deltas and final.usage.output_tokens > 0


def test_real_model_streamed_forced_function_call(llama: LlamaServer) -> None:
    events = real_stream(llama, {"model": "local", "input": "Weather in Lyon?", "stream": True, "tools": [WEATHER_TOOL],
                                 "tool_choice": "required", "max_output_tokens": 64, "temperature": 0})
    typed = validated(events)
    done = [e for e in events if e["type"] == "response.function_call_arguments.done"]
    assert done  # the model may call more than once; each call's deltas add up to its arguments
    for call in done:
        deltas = "".join(e["delta"] for e in events
                         if e["type"] == "response.function_call_arguments.delta" and e["item_id"] == call["item_id"])
        assert call["arguments"] == deltas and isinstance(json.loads(deltas), dict)
    final = typed[-1].response
    assert any(item.type == "function_call" and item.name == "get_weather" for item in final.output)


def test_real_model_second_turn_with_the_function_output(llama: LlamaServer) -> None:
    # tool_choice "none": llama.cpp answers 500 when the model's free text does not parse as its tool format.
    request = {"model": "local", "max_output_tokens": 48, "tools": [WEATHER_TOOL], "tool_choice": "none", "input": [
        {"role": "user", "content": "What is the weather in Paris?"},
        {"type": "function_call", "call_id": "call_1", "name": "get_weather", "arguments": "{\"city\":\"Paris\"}"},
        {"type": "function_call_output", "call_id": "call_1", "output": "Sunny, 24 degrees."},
    ]}
    response = Response.model_validate(chat_to_response(real_chat(llama, request), request))
    assert response.output_text.strip()
