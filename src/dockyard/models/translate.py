"""Responses API calls for upstreams that speak only Chat Completions, translated both ways.

A deployment whose connection says `speaks_responses=False` still answers `POST …/responses`: the
request becomes a Chat Completions request (`responses_to_chat`), and the answer comes back as a
Response (`chat_to_response`) or, streamed, as the Responses event sequence (`ResponsesStream`):
`response.created`, `response.in_progress`, per item `response.output_item.added`, for text
`response.content_part.added`, `response.output_text.delta`…, `response.output_text.done`,
`response.content_part.done`, for function calls `response.function_call_arguments.delta`…,
`response.function_call_arguments.done`, then `response.output_item.done`, and last
`response.completed` (or `response.incomplete` when the model ran out of tokens), each with its
`sequence_number`. Usage is mapped (prompt → input, completion → output tokens, cached and
reasoning token details kept).

Why hand-written: the maintained translators live inside large gateways (litellm's Responses bridge
needs all of litellm, dozens of dependencies and a release a day), and the small PyPI packages that
bridge the two APIs (codex-relay, codex-rosetta, agent-wire-proxy, …) are one-person proxy servers for
Codex CLI, not libraries. The shapes here are openai's own (`openai.types.responses`); they are built
as plain dicts on the hot path, and the tests validate every event and response against those types.

What does not translate, refused with a 400 that says so: `previous_response_id` and `conversation`
(dockyard keeps no history for translated calls: send the whole conversation in `input`), built-in
tools (web search, file search, code interpreter, MCP: only `function` tools exist in Chat
Completions), items by reference, and files by id. Reasoning items in `input` are dropped (Chat
Completions has no place for them).
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from dockyard.domain.errors import BadRequest

TRANSLATION_UNSUPPORTED = "UnsupportedOnChatCompletionsDeployment"

# Request fields that mean the same in both APIs.
_SAME = ("temperature", "top_p", "parallel_tool_calls", "user", "stream", "service_tier", "prompt_cache_key",
         "safety_identifier")
# Request fields with no Chat Completions counterpart that are safe to drop: they change storage,
# bookkeeping or nothing at all for a stateless call.
_DROPPED = ("store", "metadata", "truncation", "include", "background", "stream_options", "prompt_cache_retention",
            "max_tool_calls", "model", "top_logprobs")
# What the Response echoes of the request, as OpenAI's does.
_ECHOED = ("instructions", "max_output_tokens", "temperature", "top_p", "user", "previous_response_id",
           "service_tier", "truncation", "reasoning")


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(24)}"


def _unsupported(what: str) -> BadRequest:
    return BadRequest(f"{what} This deployment's connection speaks only Chat Completions, so dockyard translates "
                      "Responses calls for it, and this part has no Chat Completions equivalent.",
                      code=TRANSLATION_UNSUPPORTED)


# ---- request: Responses -> Chat Completions ---------------------------------------------------------

def responses_to_chat(body: dict[str, Any]) -> dict[str, Any]:
    """The Chat Completions request that asks the same as this Responses request."""
    for stateful in ("previous_response_id", "conversation"):
        if body.get(stateful):
            raise _unsupported(f"'{stateful}' needs stored history, which dockyard does not keep for this "
                               "deployment: send the whole conversation in 'input' instead.")
    messages: list[dict[str, Any]] = []
    instructions = body.get("instructions")
    if isinstance(instructions, str) and instructions:
        messages.append({"role": "system", "content": instructions})
    messages.extend(_messages(body.get("input", [])))
    chat: dict[str, Any] = {"model": body.get("model"), "messages": messages}
    for name in _SAME:
        if body.get(name) is not None:
            chat[name] = body[name]
    if body.get("max_output_tokens") is not None:
        chat["max_tokens"] = body["max_output_tokens"]
    if body.get("tools"):
        chat["tools"] = [_tool(tool) for tool in body["tools"]]
    choice = body.get("tool_choice")
    if isinstance(choice, dict) and choice.get("type") == "function" and chat.get("tools"):
        # One named function, said the way every Chat Completions server understands (llama.cpp and
        # others take only the strings): that function alone, and a call required.
        chat["tools"] = [t for t in chat["tools"] if t["function"]["name"] == choice.get("name")] or chat["tools"]
        chat["tool_choice"] = "required"
    elif choice is not None:
        chat["tool_choice"] = _tool_choice(choice)
    text_format = (body.get("text") or {}).get("format") if isinstance(body.get("text"), dict) else None
    if isinstance(text_format, dict) and text_format.get("type") not in (None, "text"):
        chat["response_format"] = _response_format(text_format)
    effort = (body.get("reasoning") or {}).get("effort") if isinstance(body.get("reasoning"), dict) else None
    if effort:
        chat["reasoning_effort"] = effort
    if chat.get("stream"):
        chat["stream_options"] = {"include_usage": True}
    unknown = set(body) - set(_SAME) - set(_DROPPED) - {
        "input", "instructions", "max_output_tokens", "tools", "tool_choice", "text", "reasoning",
        "previous_response_id", "conversation", "agent_reference", "agent"}
    if unknown:
        # Forwarded as is: OpenAI-compatible servers take extensions (llama.cpp's top_k, vLLM's …).
        chat.update({name: body[name] for name in unknown})
    return chat


def _messages(input_: Any) -> Iterator[dict[str, Any]]:
    if isinstance(input_, str):
        yield {"role": "user", "content": input_}
        return
    if not isinstance(input_, list):
        raise BadRequest("'input' must be a string or a list of items.", code="InvalidRequestBody", param="input")
    pending_calls: list[dict[str, Any]] = []
    for item in input_:
        if not isinstance(item, dict):
            raise BadRequest("Each item of 'input' must be an object.", code="InvalidRequestBody", param="input")
        kind = item.get("type", "message")
        if kind == "function_call":
            # Consecutive calls are one assistant turn in Chat Completions.
            pending_calls.append({"id": item.get("call_id"), "type": "function",
                                  "function": {"name": item.get("name"), "arguments": item.get("arguments", "")}})
            continue
        if pending_calls:
            yield {"role": "assistant", "content": None, "tool_calls": pending_calls}
            pending_calls = []
        if kind == "message":
            yield _message(item)
        elif kind == "function_call_output":
            yield {"role": "tool", "tool_call_id": item.get("call_id"), "content": _text_of(item.get("output", ""))}
        elif kind == "reasoning":
            continue
        elif kind == "item_reference":
            raise _unsupported("Items by reference ('item_reference') need stored items:")
        else:
            raise _unsupported(f"Input items of type {kind!r} cannot be sent.")
    if pending_calls:
        yield {"role": "assistant", "content": None, "tool_calls": pending_calls}


def _message(item: dict[str, Any]) -> dict[str, Any]:
    role = item.get("role", "user")
    # `developer` is OpenAI's newer name for `system`; not every Chat Completions server knows it.
    role = "system" if role == "developer" else role
    content = item.get("content", "")
    if isinstance(content, str):
        return {"role": role, "content": content}
    if role in ("assistant", "system"):
        return {"role": role, "content": _text_of(content)}
    return {"role": role, "content": [_part(part) for part in content]}


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(str(part.get("text") or part.get("refusal") or "") for part in content if isinstance(part, dict))
    return json.dumps(content)


def _part(part: dict[str, Any]) -> dict[str, Any]:
    kind = part.get("type")
    if kind in ("input_text", "output_text", "text"):
        return {"type": "text", "text": part.get("text", "")}
    if kind == "input_image":
        if not part.get("image_url"):
            raise _unsupported("Images by file id cannot be sent; send 'image_url' (a URL or a data: URL).")
        image: dict[str, Any] = {"url": part["image_url"]}
        if part.get("detail"):
            image["detail"] = part["detail"]
        return {"type": "image_url", "image_url": image}
    if kind == "input_file":
        if not part.get("file_data"):
            raise _unsupported("Files by id or URL cannot be sent; send 'file_data'.")
        return {"type": "file", "file": {"file_data": part["file_data"], "filename": part.get("filename")}}
    raise _unsupported(f"Content parts of type {kind!r} cannot be sent.")


def _tool(tool: dict[str, Any]) -> dict[str, Any]:
    if not isinstance(tool, dict) or tool.get("type") != "function":
        kind = tool.get("type") if isinstance(tool, dict) else tool
        raise _unsupported(f"Tools of type {kind!r} run on Foundry's side; only 'function' tools can be sent.")
    function = {"name": tool.get("name"), "parameters": tool.get("parameters") or {"type": "object", "properties": {}}}
    for name in ("description", "strict"):
        if tool.get(name) is not None:
            function[name] = tool[name]
    return {"type": "function", "function": function}


def _tool_choice(choice: Any) -> Any:
    if isinstance(choice, str):
        return choice
    if isinstance(choice, dict) and choice.get("type") == "function":
        return {"type": "function", "function": {"name": choice.get("name")}}
    if isinstance(choice, dict) and choice.get("type") == "allowed_tools":
        return choice.get("mode", "auto")
    raise _unsupported(f"tool_choice {choice!r} cannot be sent.")


def _response_format(text_format: dict[str, Any]) -> dict[str, Any]:
    if text_format.get("type") == "json_object":
        return {"type": "json_object"}
    if text_format.get("type") == "json_schema":
        schema = {"name": text_format.get("name", "response"), "schema": text_format.get("schema", {})}
        for name in ("description", "strict"):
            if text_format.get(name) is not None:
                schema[name] = text_format[name]
        return {"type": "json_schema", "json_schema": schema}
    raise _unsupported(f"text.format {text_format.get('type')!r} cannot be sent.")


# ---- answer: Chat Completion -> Response ------------------------------------------------------------

def usage_of(chat_usage: dict[str, Any] | None) -> dict[str, Any] | None:
    if not chat_usage:
        return None
    prompt = int(chat_usage.get("prompt_tokens") or 0)
    completion = int(chat_usage.get("completion_tokens") or 0)
    prompt_details = chat_usage.get("prompt_tokens_details") or {}
    reasoning = (chat_usage.get("completion_tokens_details") or {}).get("reasoning_tokens") or 0
    return {"input_tokens": prompt,
            "input_tokens_details": {"cached_tokens": prompt_details.get("cached_tokens") or 0,
                                     "cache_write_tokens": prompt_details.get("cache_write_tokens") or 0},
            "output_tokens": completion, "output_tokens_details": {"reasoning_tokens": reasoning},
            "total_tokens": int(chat_usage.get("total_tokens") or prompt + completion)}


def _envelope(request: dict[str, Any], response_id: str, created_at: int, model: str, status: str,
              output: list[dict[str, Any]], usage: dict[str, Any] | None = None,
              finish_reason: str | None = None) -> dict[str, Any]:
    response: dict[str, Any] = {
        "id": response_id, "object": "response", "created_at": created_at, "status": status, "model": model,
        "output": output, "error": None, "incomplete_details": None,
        "parallel_tool_calls": request.get("parallel_tool_calls", True),
        "tool_choice": request.get("tool_choice", "auto"), "tools": request.get("tools", []),
        "text": request.get("text") or {"format": {"type": "text"}}, "metadata": request.get("metadata") or {},
        "usage": usage,
    }
    for name in _ECHOED:
        response.setdefault(name, request.get(name))
    if status == "incomplete":
        reason = "content_filter" if finish_reason == "content_filter" else "max_output_tokens"
        response["incomplete_details"] = {"reason": reason}
    if status in ("completed", "incomplete"):
        response["completed_at"] = int(time.time())
    return response


def _status(finish_reason: str | None) -> str:
    return "incomplete" if finish_reason in ("length", "content_filter") else "completed"


def _text_part(text: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def _message_item(item_id: str, content: list[dict[str, Any]], status: str) -> dict[str, Any]:
    return {"id": item_id, "type": "message", "role": "assistant", "status": status, "content": content}


def _call_item(item_id: str, call_id: str, name: str, arguments: str, status: str) -> dict[str, Any]:
    return {"id": item_id, "type": "function_call", "call_id": call_id, "name": name, "arguments": arguments,
            "status": status}


def chat_to_response(chat: dict[str, Any], request: dict[str, Any], response_id: str | None = None) -> dict[str, Any]:
    """The Response that says what this Chat Completion said."""
    choice = (chat.get("choices") or [{}])[0]
    message = choice.get("message") or {}
    output: list[dict[str, Any]] = []
    content: list[dict[str, Any]] = []
    if message.get("content"):
        content.append(_text_part(message["content"]))
    if message.get("refusal"):
        content.append({"type": "refusal", "refusal": message["refusal"]})
    if content:
        output.append(_message_item(new_id("msg"), content, "completed"))
    for call in message.get("tool_calls") or []:
        function = call.get("function") or {}
        output.append(_call_item(new_id("fc"), call.get("id") or new_id("call"), function.get("name", ""),
                                 function.get("arguments") or "", "completed"))
    finish_reason = choice.get("finish_reason")
    return _envelope(request, response_id or new_id("resp"), int(chat.get("created") or time.time()),
                     chat.get("model") or request.get("model", ""), _status(finish_reason), output,
                     usage_of(chat.get("usage")), finish_reason)


# ---- streams: Chat Completion chunks -> Responses events --------------------------------------------

class ChatChunks:
    """Chat Completion chunks out of a server-sent event byte stream, fed in pieces as they arrive."""

    def __init__(self) -> None:
        self._buffer = b""
        self._data: list[bytes] = []
        self.done = False

    def feed(self, data: bytes) -> Iterator[dict[str, Any]]:
        self._buffer += data
        while not self.done:
            line, newline, rest = self._buffer.partition(b"\n")
            if not newline:
                return
            self._buffer = rest
            line = line.rstrip(b"\r")
            if line.startswith(b"data:"):
                self._data.append(line[5:].lstrip(b" "))
            elif not line and self._data:
                payload, self._data = b"\n".join(self._data), []
                if payload.strip() == b"[DONE]":
                    self.done = True
                    return
                try:
                    yield json.loads(payload)
                except ValueError:
                    continue


@dataclass
class _Item:
    output_index: int
    item_id: str
    kind: str  # "message" or "function_call"
    text: str = ""
    call_id: str = ""
    name: str = ""
    open: bool = True


@dataclass
class ResponsesStream:
    """Turns Chat Completion chunks into the Responses events a streaming client expects.

    Feed it each chunk (`chunk`), then `finish()` when the upstream stream ends, or `error()` when it
    broke off. Every method returns the encoded SSE events to send, in order.
    """

    request: dict[str, Any]
    response_id: str = field(default_factory=lambda: new_id("resp"))
    created_at: int = field(default_factory=lambda: int(time.time()))
    model: str = ""
    sequence_number: int = 0
    usage: dict[str, Any] | None = None
    finish_reason: str | None = None
    _items: list[_Item] = field(default_factory=list)
    _message: _Item | None = None
    _calls: dict[int, _Item] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.model = self.model or str(self.request.get("model") or "")

    def _event(self, kind: str, **fields: Any) -> bytes:
        data = {"type": kind, "sequence_number": self.sequence_number, **fields}
        self.sequence_number += 1
        return b"event: " + kind.encode() + b"\ndata: " + json.dumps(data, separators=(",", ":")).encode() + b"\n\n"

    def _response(self, status: str) -> dict[str, Any]:
        output = [self._item_wire(item) for item in self._items] if status != "in_progress" else []
        return _envelope(self.request, self.response_id, self.created_at, self.model, status, output, self.usage,
                         self.finish_reason)

    def _item_wire(self, item: _Item) -> dict[str, Any]:
        status = "in_progress" if item.open else "completed"
        if item.kind == "message":
            return _message_item(item.item_id, [_text_part(item.text)] if not item.open else [], status)
        return _call_item(item.item_id, item.call_id, item.name, item.text, status)

    def start(self) -> bytes:
        response = self._response("in_progress")
        return (self._event("response.created", response=response)
                + self._event("response.in_progress", response=response))

    def chunk(self, chunk: dict[str, Any]) -> bytes:
        if chunk.get("error"):
            error = chunk["error"] if isinstance(chunk["error"], dict) else {"message": str(chunk["error"])}
            return self.error(str(error.get("message") or "The model failed."), str(error.get("code") or "ModelError"))
        out = b""
        if chunk.get("model"):
            self.model = chunk["model"]
        if chunk.get("usage"):
            self.usage = usage_of(chunk["usage"])
        for choice in chunk.get("choices") or []:
            delta = choice.get("delta") or {}
            if delta.get("content"):
                out += self._text(delta["content"])
            for call in delta.get("tool_calls") or []:
                out += self._call(call)
            if choice.get("finish_reason"):
                self.finish_reason = choice["finish_reason"]
        return out

    def _text(self, delta: str) -> bytes:
        out = b""
        if self._message is None or not self._message.open:
            self._message = self._open(_Item(len(self._items), new_id("msg"), "message"))
            out += self._event("response.output_item.added", output_index=self._message.output_index,
                               item=self._item_wire(self._message))
            out += self._event("response.content_part.added", item_id=self._message.item_id,
                               output_index=self._message.output_index, content_index=0, part=_text_part(""))
        self._message.text += delta
        return out + self._event("response.output_text.delta", item_id=self._message.item_id,
                                 output_index=self._message.output_index, content_index=0, delta=delta, logprobs=[])

    def _call(self, call: dict[str, Any]) -> bytes:
        out = b""
        index = int(call.get("index", len(self._calls)))
        function = call.get("function") or {}
        item = self._calls.get(index)
        if item is None:
            if self._message is not None and self._message.open:
                out += self._close(self._message)  # items follow one another; the text turn is over
            item = self._open(_Item(len(self._items), new_id("fc"), "function_call",
                                    call_id=call.get("id") or new_id("call"), name=function.get("name") or ""))
            self._calls[index] = item
            out += self._event("response.output_item.added", output_index=item.output_index,
                               item=self._item_wire(item))
        elif function.get("name") and not item.name:
            item.name = function["name"]
        arguments = function.get("arguments") or ""
        if arguments:
            item.text += arguments
            out += self._event("response.function_call_arguments.delta", item_id=item.item_id,
                               output_index=item.output_index, delta=arguments)
        return out

    def _open(self, item: _Item) -> _Item:
        self._items.append(item)
        return item

    def _close(self, item: _Item) -> bytes:
        item.open = False
        out = b""
        if item.kind == "message":
            part = _text_part(item.text)
            out += self._event("response.output_text.done", item_id=item.item_id, output_index=item.output_index,
                               content_index=0, text=item.text, logprobs=[])
            out += self._event("response.content_part.done", item_id=item.item_id, output_index=item.output_index,
                               content_index=0, part=part)
        else:
            out += self._event("response.function_call_arguments.done", item_id=item.item_id,
                               output_index=item.output_index, name=item.name, arguments=item.text)
        return out + self._event("response.output_item.done", output_index=item.output_index,
                                 item=self._item_wire(item))

    def finish(self) -> bytes:
        out = b"".join(self._close(item) for item in self._items if item.open)
        status = _status(self.finish_reason)
        kind = "response.completed" if status == "completed" else "response.incomplete"
        return out + self._event(kind, response=self._response(status))

    def error(self, message: str, code: str) -> bytes:
        return self._event("error", code=code, message=message, param=None)
