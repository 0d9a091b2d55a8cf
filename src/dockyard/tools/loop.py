"""The Responses tool loop: the model asks, dockyard runs the platform tool, the model continues.

A Responses call to a model deployment whose `tools` name platform tools (`mcp`, `code_interpreter`,
`file_search`: whatever `ToolKinds` has) comes here instead of the plain relay. Each platform entry is
bound and prepared; the model is offered the union of their function tools plus the caller's own; each
platform function call the model makes is run (`PlatformTool.run`) and its output goes back to the model,
round after round, until the model answers with a message, calls one of the caller's functions (returned
to the caller, not run), a tool waits for an approval, or `max_rounds` model calls were made (then the
Response is "incomplete"). What the caller sees is one Response in OpenAI's shape: the tools' items
(`mcp_list_tools`, `mcp_call`, `code_interpreter_call`, …) and the final message, with usage summed.

The model is reached only through `call_model`, a non-streamed Responses call the HTTP layer supplies
(api/inference.py: the deployment's upstream, its credentials, and the Chat Completions translation for
servers that speak only that), so this module knows nothing of HTTP and any deployment drives the loop.

Each Response is kept (store/tool_responses.py) with the model-level transcript and its input items:
`previous_response_id` continues it (another caller gets the 404 of a response that does not exist), an
approval request is answered by an input item `{"type": "mcp_approval_response", "approval_request_id",
"approve"}`, and the HTTP layer serves GET, DELETE, cancel and input_items of it.
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from starlette.concurrency import run_in_threadpool

from dockyard.domain.errors import BadRequest, DockyardError, NotFound
from dockyard.store.tool_responses import LoopRecord, ToolResponseStore
from dockyard.tools.base import PlatformTool, ToolContext, ToolKind, ToolOutcome
from dockyard.tools.events import LoopEvents

log = logging.getLogger("dockyard.tools")

CallModel = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]
# An approval to act on: the request item, the model's function call behind it (None when the caller
# sent the request item itself), approve, reason.
_Approval = tuple[dict[str, Any], dict[str, Any] | None, bool, str | None]

DEFAULT_MAX_ROUNDS = 8
# A Response never holds more items than this; past it the loop stops as it does at the round bound.
MAX_OUTPUT_ITEMS = 256
INCOMPLETE_REASON = "max_tool_rounds"
RESPONSE_NOT_FOUND = "ResponseNotFound"

# Request fields the loop decides itself for each model call; everything else the caller sent goes on.
_LOOP_FIELDS = {"tools", "tool_choice", "input", "previous_response_id", "stream", "stream_options", "max_tool_calls",
                "store", "background", "conversation", "include", "agent", "agent_reference", "model"}
# What the Response echoes of the request, as OpenAI's does.
_ECHOED = ("instructions", "max_output_tokens", "temperature", "top_p", "user", "previous_response_id",
           "service_tier", "truncation", "reasoning", "max_tool_calls")
# Items of earlier Responses a caller may send back in `input`, that the model has no use for as such.
_SHOWN_ONLY = {"mcp_list_tools", "mcp_approval_request", "code_interpreter_call", "file_search_call"}
# Tool entry fields never echoed nor kept: they carry credentials.
_SECRET_FIELDS = ("headers", "authorization")


class ModelCallFailed(DockyardError):
    """The model's upstream refused or failed one call of the loop; its status and words are passed on."""

    def __init__(self, status: int, message: str, *, code: str = "ModelError",
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message, code=code)
        self.status_code = status
        self.headers = headers


# `include` value that asks for file_search_call items' results (the passages found).
_RESULTS_INCLUDE = "file_search_call.results"


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(24)}"


def uses_loop(body: Mapping[str, Any], kinds: Mapping[str, ToolKind]) -> bool:
    """Whether a Responses call needs the loop: a platform tool in `tools`, or an approval to answer."""
    tools = body.get("tools")
    if isinstance(tools, list) and any(isinstance(t, dict) and t.get("type") in kinds for t in tools):
        return True
    items = body.get("input")
    return isinstance(items, list) and any(isinstance(i, dict) and i.get("type") == "mcp_approval_response"
                                           for i in items)


@dataclass
class Started:
    """A platform tool call about to run, as `run` yields it: its item in progress (the id the item will
    have), so a stream shows the call before the tool has finished."""

    item: dict[str, Any]


@dataclass
class _Bound:
    type: str
    config: Mapping[str, Any]
    tool: PlatformTool


@dataclass
class Turn:
    """One Responses call through the loop: its state from binding to the last model call."""

    body: dict[str, Any]
    ctx: ToolContext
    call_model: CallModel
    max_rounds: int = DEFAULT_MAX_ROUNDS
    id: str = field(default_factory=lambda: new_id("resp"))
    created_at: int = field(default_factory=lambda: int(time.time()))
    model: str = ""
    bound: list[_Bound] = field(default_factory=list)
    functions: dict[str, _Bound] = field(default_factory=dict)
    caller_tools: list[dict[str, Any]] = field(default_factory=list)
    output: list[dict[str, Any]] = field(default_factory=list)
    transcript: list[dict[str, Any]] = field(default_factory=list)
    pending: dict[str, Any] = field(default_factory=dict)
    annotations: list[dict[str, Any]] = field(default_factory=list)
    usage: dict[str, Any] | None = None
    status: str = "in_progress"
    incomplete_details: dict[str, Any] | None = None
    tool_calls: int = 0
    # What `input_items` lists: the previous Response's input and output, then this call's input (with ids).
    inputs: list[dict[str, Any]] = field(default_factory=list)
    # Set by `start`: what the new input asks before the first model call.
    _approvals: list[_Approval] = field(default_factory=list)
    _prepared_items: list[dict[str, Any]] = field(default_factory=list)

    # -- before the first model call: everything that may still fail the request with a 4xx ------------

    async def start(self, kinds: Mapping[str, ToolKind], store: ToolResponseStore | None) -> None:
        """Bind and prepare the tools, read the previous Response, sort the input. Raises DockyardError."""
        self.model = str(self.body.get("model") or "")
        tools = self.body.get("tools") or []
        if not isinstance(tools, list):
            raise BadRequest("'tools' must be a list.", code="InvalidRequestBody", param="tools")
        for entry in tools:
            if not isinstance(entry, dict) or not isinstance(entry.get("type"), str):
                raise BadRequest("Each entry of 'tools' must be an object with a 'type'.", code="InvalidRequestBody",
                                 param="tools")
            kind = kinds.get(entry["type"])
            if kind is not None:
                self.bound.append(_Bound(entry["type"], entry, kind.bind(entry, self.ctx.project, self.ctx.caller)))
            else:
                self.caller_tools.append(entry)  # function tools, and types the model's server may know
        record = await self._previous(store)
        if record is not None:
            self.transcript = list(record.transcript)
            self.inputs = [*record.input_items, *record.response.get("output", [])]
        self._read_input(record)
        for bound in self.bound:
            items = await bound.tool.prepare(self.ctx)
            if record is None:
                self._prepared_items.extend(items)
            for spec in bound.tool.functions():
                self.functions[spec.name] = bound
        clashing = {t.get("name") for t in self.caller_tools if t.get("type") == "function"} & set(self.functions)
        if clashing:
            raise BadRequest(f"Function tool name(s) {', '.join(sorted(map(str, clashing)))} are the names dockyard "
                             "gives platform tools' functions; rename your function.", code="InvalidRequestBody",
                             param="tools")

    async def _previous(self, store: ToolResponseStore | None) -> LoopRecord | None:
        previous = self.body.get("previous_response_id")
        if previous is None:
            return None
        if not isinstance(previous, str) or not previous:
            raise BadRequest("'previous_response_id' must be the id of an earlier response.",
                             code="InvalidRequestBody", param="previous_response_id")
        record = await run_in_threadpool(store.find, self.ctx.project, self.ctx.caller, previous) if store else None
        if record is None:
            raise NotFound(f"Response {previous!r} was not found. Responses with platform tools continue only "
                           "responses dockyard's tool loop made, for the same caller.", code=RESPONSE_NOT_FOUND,
                           param="previous_response_id")
        return record

    def _read_input(self, record: LoopRecord | None) -> None:
        given = self.body.get("input", [])
        if isinstance(given, str):
            self.transcript.append({"type": "message", "role": "user", "content": given})
            self.inputs.append(input_item({"type": "message", "role": "user", "content": given}))
            return
        if not isinstance(given, list):
            raise BadRequest("'input' must be a string or a list of items.", code="InvalidRequestBody", param="input")
        echoed: dict[str, dict[str, Any]] = {}
        for item in given:
            if not isinstance(item, dict):
                raise BadRequest("Each item of 'input' must be an object.", code="InvalidRequestBody", param="input")
            self.inputs.append(input_item(item))
            kind = item.get("type", "message")
            if kind == "mcp_approval_request" and isinstance(item.get("id"), str):
                echoed[item["id"]] = item
            if kind == "mcp_approval_response":
                self._approvals.append(self._approval(item, record, echoed))
            elif kind == "mcp_call":
                call_id = str(item.get("id") or new_id("call"))
                self.transcript.append({"type": "function_call", "call_id": call_id,
                                        "name": f"mcp__{item.get('server_label')}__{item.get('name')}",
                                        "arguments": str(item.get("arguments") or "{}")})
                self.transcript.append({"type": "function_call_output", "call_id": call_id,
                                        "output": str(item.get("output") or json.dumps(item.get("error")))})
            elif kind not in _SHOWN_ONLY:
                self.transcript.append(item)

    def _approval(self, item: dict[str, Any], record: LoopRecord | None,
                  echoed: Mapping[str, dict[str, Any]]) -> _Approval:
        request_id = item.get("approval_request_id")
        approve = item.get("approve")
        if not isinstance(request_id, str) or not isinstance(approve, bool):
            raise BadRequest("An mcp_approval_response needs 'approval_request_id' (a string) and 'approve' (true or "
                             "false).", code="InvalidRequestBody", param="input")
        reason = item.get("reason") if isinstance(item.get("reason"), str) else None
        if record is not None and request_id in record.pending:
            request = next((i for i in record.response.get("output", []) if i.get("id") == request_id), None)
            if request is not None:
                return request, record.pending[request_id], approve, reason
        if request_id in echoed:
            return dict(echoed[request_id]), None, approve, reason
        raise BadRequest(f"The approval request {request_id!r} is not waiting for an answer: send "
                         "'previous_response_id' of the response that asked it (or the mcp_approval_request item "
                         "itself in 'input'), once.", code="ApprovalRequestNotFound", param="input")

    # -- the rounds ------------------------------------------------------------------------------------

    async def run(self) -> AsyncIterator[dict[str, Any] | Started]:
        """Run to the end, yielding each output item once it is final, and each platform tool call as it
        starts (for streaming)."""
        for item in self._prepared_items:
            yield self._show(item)
        for request, call, approve, reason in self._approvals:
            bound = self._owner_of(request, call)
            self.tool_calls += 1  # counts against max_tool_calls like any call this Response runs
            resuming = _mcp_call(request.get("server_label"), str(request.get("name") or ""),
                                 str(request.get("arguments") or "{}"), str(request.get("id") or ""))
            yield Started(resuming)
            outcome = await bound.tool.resume(self.ctx, request, approve, reason)
            for shown in self._outcome_items(outcome, resuming):
                yield shown
            call = call or {"type": "function_call", "call_id": new_id("call"),
                            "name": self._function_of(bound, request), "arguments": request.get("arguments", "{}")}
            self.transcript.append(call)
            self.transcript.append({"type": "function_call_output", "call_id": call["call_id"],
                                    "output": outcome.model_output or ""})
        first = True
        for _ in range(self.max_rounds):
            answer = await self.call_model(self._model_request(first))
            first = False
            self._count(answer)
            items = [i for i in answer.get("output") or [] if isinstance(i, dict)]
            calls = [i for i in items if i.get("type") == "function_call" and i.get("name") in self.functions]
            if not calls:
                self._finish_with(items, answer)
                for item in items:
                    yield self._show(self._annotated(item))
                return
            waiting = False
            for item in items:
                if item.get("type") == "function_call" and item.get("name") in self.functions:
                    continue
                self.transcript.append(_model_item(item))
                yield self._show(item)  # text beside the calls, or the caller's own function calls
            for call in calls:
                bound, arguments = self._arguments(call)
                announced = _announced(bound, str(call["name"]), arguments)
                if announced is not None:
                    yield Started(announced)
                self.tool_calls += 1
                call_id = str(call.get("call_id") or new_id("call"))
                outcome = await bound.tool.run(self.ctx, str(call["name"]), arguments, call_id)
                for shown in self._outcome_items(outcome, announced):
                    yield shown
                if outcome.model_output is None:
                    self.pending[outcome.item["id"]] = _model_item(call)
                    waiting = True
                else:
                    self.transcript.append(_model_item(call))
                    self.transcript.append({"type": "function_call_output", "call_id": call.get("call_id"),
                                            "output": outcome.model_output})
            foreign = any(i.get("type") == "function_call" and i.get("name") not in self.functions for i in items)
            if waiting or foreign:
                self.status = "completed"
                return
            if len(self.output) >= MAX_OUTPUT_ITEMS:
                break
        self.status = "incomplete"
        self.incomplete_details = {"reason": INCOMPLETE_REASON}
        self.ctx.log(f"tool loop stopped after {self.max_rounds} model calls without an answer")

    def _arguments(self, call: dict[str, Any]) -> tuple[_Bound, dict[str, Any]]:
        """The tool a model's function call is for, and its arguments (an empty object if they are not one)."""
        try:
            arguments = json.loads(call.get("arguments") or "{}")
        except ValueError:
            arguments = None
        if not isinstance(arguments, dict):
            arguments = {}
            self.ctx.log(f"tool loop: the model called {call['name']} with arguments that are not a JSON object")
        return self.functions[str(call["name"])], arguments

    def _outcome_items(self, outcome: ToolOutcome, announced: dict[str, Any] | None) -> list[dict[str, Any]]:
        """The outcome's items as shown; an announced call's item first, under the id it was announced with."""
        self.annotations.extend(outcome.annotations)
        if announced is None:
            return [self._show(item) for item in [*outcome.extra_items, outcome.item]]
        outcome.item["id"] = announced["id"]
        return [self._show(item) for item in [outcome.item, *outcome.extra_items]]

    def _show(self, item: dict[str, Any]) -> dict[str, Any]:
        if item.get("type") == "file_search_call" and _RESULTS_INCLUDE not in (self.body.get("include") or []):
            item = {**item, "results": None}  # as OpenAI answers: the passages only when asked for
        self.output.append(item)
        return item

    def _owner_of(self, request: Mapping[str, Any], call: Mapping[str, Any] | None) -> _Bound:
        if call is not None and call.get("name") in self.functions:
            return self.functions[str(call["name"])]
        label = request.get("server_label")
        for bound in self.bound:
            if bound.type == "mcp" and getattr(bound.tool, "label", None) == label:
                return bound
        raise BadRequest(f"The approval request {request.get('id')!r} was made by MCP server {label!r}, which is not "
                         "among this request's tools: send the same 'tools' as the request that asked it.",
                         code="InvalidRequestBody", param="tools")

    def _function_of(self, bound: _Bound, request: Mapping[str, Any]) -> str:
        for name, owner in self.functions.items():
            if owner is bound and getattr(bound.tool, "tool_name", lambda _: None)(name) == request.get("name"):
                return name
        return f"mcp__{request.get('server_label')}__{request.get('name')}"

    def _model_request(self, first: bool) -> dict[str, Any]:
        request = {k: v for k, v in self.body.items() if k not in _LOOP_FIELDS}
        request["model"] = self.body.get("model")
        request["input"] = list(self.transcript)
        choice = self.body.get("tool_choice", "auto")
        budget = self.body.get("max_tool_calls")
        exhausted = isinstance(budget, int) and self.tool_calls >= budget
        offered = {} if exhausted or choice == "none" else dict(self.functions)
        forced: Any = None
        if first:
            offered, forced = self._forced(choice, offered)
        tools = [bound.tool for bound in {id(b): b for b in offered.values()}.values()]
        specs = [spec.to_tool() for tool in tools for spec in tool.functions() if spec.name in offered]
        all_tools = specs + self.caller_tools
        if all_tools:
            request["tools"] = all_tools
            request["tool_choice"] = forced if forced is not None else ("none" if choice == "none" else "auto")
        return request

    def _forced(self, choice: Any, offered: dict[str, _Bound]) -> tuple[dict[str, _Bound], Any]:
        """The first call's functions and tool_choice when `tool_choice` forces a tool."""
        if choice == "required" or (isinstance(choice, dict) and choice.get("type") in ("function", "allowed_tools")):
            return offered, choice
        if not isinstance(choice, dict) or not offered:
            return offered, None
        wanted = {name: bound for name, bound in offered.items() if bound.type == choice.get("type")}
        if choice.get("type") == "mcp":
            wanted = {name: bound for name, bound in wanted.items()
                      if getattr(bound.tool, "label", None) == choice.get("server_label")}
            if choice.get("name"):
                wanted = {name: bound for name, bound in wanted.items()
                          if getattr(bound.tool, "tool_name", lambda _: None)(name) == choice["name"]}
        if not wanted:
            raise BadRequest(f"tool_choice {json.dumps(choice)} names no tool of this request.",
                             code="InvalidRequestBody", param="tool_choice")
        if len(wanted) == 1:
            return wanted, {"type": "function", "name": next(iter(wanted))}
        return wanted, "required"

    def _count(self, answer: Mapping[str, Any]) -> None:
        if answer.get("model"):
            self.model = str(answer["model"])
        usage = answer.get("usage")
        if isinstance(usage, dict):
            self.usage = _add_usage(self.usage, usage)

    def _finish_with(self, items: list[dict[str, Any]], answer: Mapping[str, Any]) -> None:
        self.transcript.extend(_model_item(i) for i in items)
        self.status = str(answer.get("status") or "completed")
        if self.status not in ("completed", "incomplete"):
            self.status = "completed"
        self.incomplete_details = answer.get("incomplete_details") if self.status == "incomplete" else None

    def _annotated(self, item: dict[str, Any]) -> dict[str, Any]:
        if item.get("type") != "message" or not self.annotations:
            return item
        for part in item.get("content") or []:
            if isinstance(part, dict) and part.get("type") == "output_text":
                end = len(part.get("text") or "")
                placed = []
                seen: set[tuple[Any, ...]] = set()
                for annotation in self.annotations:
                    # One citation a file, however many searches or runs found it.
                    key = (annotation.get("type"), annotation.get("file_id"), annotation.get("container_id"))
                    if key in seen:
                        continue
                    seen.add(key)
                    annotation = dict(annotation)
                    if annotation.get("type") == "container_file_citation":
                        annotation.setdefault("start_index", end)
                        annotation.setdefault("end_index", end)
                    else:
                        annotation.setdefault("index", end)
                    placed.append(annotation)
                part["annotations"] = [*(part.get("annotations") or []), *placed]
                self.annotations = []
                break
        return item

    # -- the answer ------------------------------------------------------------------------------------

    def response(self, status: str | None = None) -> dict[str, Any]:
        status = status or self.status
        tools = [{k: v for k, v in t.items() if k not in _SECRET_FIELDS} for t in self.body.get("tools") or []
                 if isinstance(t, dict)]
        response: dict[str, Any] = {
            "id": self.id, "object": "response", "created_at": self.created_at, "status": status,
            "model": self.model, "output": self.output if status != "in_progress" else [],
            "error": None, "incomplete_details": self.incomplete_details if status == "incomplete" else None,
            "parallel_tool_calls": self.body.get("parallel_tool_calls", True),
            "tool_choice": self.body.get("tool_choice", "auto"), "tools": tools,
            "text": self.body.get("text") or {"format": {"type": "text"}},
            "metadata": self.body.get("metadata") or {}, "usage": self.usage if status != "in_progress" else None,
        }
        for name in _ECHOED:
            response.setdefault(name, self.body.get(name))
        if status in ("completed", "incomplete"):
            response["completed_at"] = int(time.time())
        return response

    def record(self) -> LoopRecord:
        return LoopRecord(id=self.id, project=self.ctx.project, owner=self.ctx.caller.owner,
                          created_at=self.created_at, response=self.response(), transcript=self.transcript,
                          pending=self.pending, input_items=self.inputs)


def _announced(bound: _Bound, function: str, arguments: Mapping[str, Any]) -> dict[str, Any] | None:
    """The item a platform tool call will show, in progress, when its kind is certain before it runs: an
    `mcp` call that waits for an approval shows an `mcp_approval_request` instead (nothing to announce)."""
    if bound.type == "code_interpreter":
        code = arguments.get("code")
        return {"id": new_id("ci"), "type": "code_interpreter_call", "status": "in_progress",
                "code": code if isinstance(code, str) else None, "container_id": None, "outputs": None}
    if bound.type == "file_search":
        return {"id": new_id("fs"), "type": "file_search_call", "status": "in_progress", "queries": [],
                "results": None}
    if bound.type == "mcp":
        name = getattr(bound.tool, "tool_name", lambda _: None)(function)
        approval = getattr(bound.tool, "approval", None)
        if name is not None and (approval is None or approval.required(name)):
            return None
        return _mcp_call(getattr(bound.tool, "label", None), name or function,
                         json.dumps(dict(arguments), separators=(",", ":")), None)
    return None


def _mcp_call(label: Any, name: str, arguments: str, approval_request_id: str | None) -> dict[str, Any]:
    return {"id": new_id("mcp"), "type": "mcp_call", "server_label": label, "name": name, "arguments": arguments,
            "approval_request_id": approval_request_id, "output": None, "error": None, "status": "in_progress"}


_ITEM_ID_PREFIXES = {"message": "msg", "function_call_output": "fco", "mcp_approval_response": "mcpr"}


def input_item(item: Mapping[str, Any]) -> dict[str, Any]:
    """An item of `input` as `input_items` lists it (OpenAI's shape): with an id, a message's text as parts."""
    shown = dict(item)
    kind = shown.setdefault("type", "message")
    if kind == "message":
        content = shown.get("content")
        if isinstance(content, str):
            assistant = shown.get("role") == "assistant"
            shown["content"] = [{"type": "output_text", "text": content, "annotations": []} if assistant else
                                 {"type": "input_text", "text": content}]
        shown.setdefault("status", "completed")
    if not isinstance(shown.get("id"), str) or not shown["id"]:
        shown["id"] = new_id(_ITEM_ID_PREFIXES.get(str(kind), "item"))
    return shown


def _model_item(item: Mapping[str, Any]) -> dict[str, Any]:
    """An item of the model's answer as the next call's input: without the id and status of this answer."""
    if item.get("type") in ("message", "function_call"):
        return {k: v for k, v in item.items() if k not in ("id", "status")}
    return dict(item)


def _add_usage(total: dict[str, Any] | None, usage: Mapping[str, Any]) -> dict[str, Any]:
    if total is None:
        return json.loads(json.dumps(usage))
    summed = dict(total)
    for key, value in usage.items():
        if isinstance(value, int | float) and isinstance(summed.get(key), int | float):
            summed[key] = summed[key] + value
        elif isinstance(value, Mapping) and isinstance(summed.get(key), Mapping):
            summed[key] = _add_usage(dict(summed[key]), value)
    return summed


async def run_to_end(turn: Turn, store: ToolResponseStore | None) -> dict[str, Any]:
    """The whole loop, non-streamed: the final Response (kept for continuations)."""
    async for _ in turn.run():
        pass
    if store is not None:
        await run_in_threadpool(store.save, turn.record())
    return turn.response()


async def stream_turn(turn: Turn, store: ToolResponseStore | None) -> AsyncIterator[bytes]:
    """The whole loop as OpenAI's event stream; a failure after the start ends it with an `error` event."""
    events = LoopEvents()
    yield events.start(turn.response("in_progress"))
    try:
        async for item in turn.run():
            yield events.started(item.item) if isinstance(item, Started) else events.item(item)
        if store is not None:
            await run_in_threadpool(store.save, turn.record())
    except DockyardError as error:
        turn.ctx.log(f"tool loop failed: {error.code}: {error.message}")
        yield events.event("error", code=error.code, message=error.message, param=None)
        return
    except Exception:  # the stream must end with an error event, whatever broke
        log.exception("tool loop failed", extra={"request_id": turn.ctx.request_id})
        yield events.event("error", code="InternalServerError", param=None,
                           message="dockyard failed while running the tools of this response. Its log has the "
                                   f"details under request id {turn.ctx.request_id}.")
        return
    yield events.finish(turn.response())
