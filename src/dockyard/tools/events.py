"""The tool loop's answer as OpenAI's Responses event stream (`stream: true`).

`response.created`, `response.in_progress`, then per output item `response.output_item.added`, the
events of its kind, `response.output_item.done`, and last `response.completed` (or
`response.incomplete`), each with its `sequence_number`. The kinds' own events, as OpenAI sends them:

- `mcp_list_tools`: `response.mcp_list_tools.in_progress`, `.completed`.
- `mcp_call`: `response.mcp_call.in_progress`, `response.mcp_call_arguments.delta`, `.done`,
  `response.mcp_call.completed` (or `.failed` when it has an error).
- `code_interpreter_call`: `response.code_interpreter_call.in_progress`,
  `response.code_interpreter_call_code.delta`, `.done`, `response.code_interpreter_call.interpreting`,
  `.completed`.
- `file_search_call`: `response.file_search_call.in_progress`, `.searching`, `.completed`.
- `function_call`: `response.function_call_arguments.delta`, `.done`.
- `message`: `response.content_part.added`, `response.output_text.delta` (the text in pieces),
  `response.output_text.annotation.added` per annotation, `response.output_text.done`,
  `response.content_part.done`.

An item's events are sent once it is final, except a platform tool call's: `started` sends its `added`
and the events up to the run (`in_progress`, its arguments or code, `interpreting`, `searching`) before
the tool runs, and the item, with the same id (which the openai client's stream accumulator insists on),
the rest (`completed` or `failed`, `output_item.done`) after it.
"""

from __future__ import annotations

import json
import re
from typing import Any

# The final text is sent in pieces of about this many characters, cut after whitespace.
_PIECE = 32
_WORDS = re.compile(r"\S*\s*")


def pieces(text: str) -> list[str]:
    """`text` cut into deltas that join back to it exactly."""
    out: list[str] = []
    current = ""
    for word in _WORDS.findall(text):
        current += word
        if len(current) >= _PIECE:
            out.append(current)
            current = ""
    if current:
        out.append(current)
    return out


class LoopEvents:
    def __init__(self) -> None:
        self.sequence_number = 0
        self.index = 0
        # The tool call `started` and not yet ended: its item id and output index.
        self._open: tuple[Any, int] | None = None

    def event(self, kind: str, **fields: Any) -> bytes:
        data = {"type": kind, "sequence_number": self.sequence_number, **fields}
        self.sequence_number += 1
        return b"event: " + kind.encode() + b"\ndata: " + json.dumps(data, separators=(",", ":")).encode() + b"\n\n"

    def start(self, response: dict[str, Any]) -> bytes:
        return self.event("response.created", response=response) + self.event("response.in_progress",
                                                                                response=response)

    def finish(self, response: dict[str, Any]) -> bytes:
        kind = "response.incomplete" if response.get("status") == "incomplete" else "response.completed"
        return self.event(kind, response=response)

    def started(self, item: dict[str, Any]) -> bytes:
        """A tool call about to run: `output_item.added` and its kind's progress events up to the run
        (`in_progress`, the arguments or code, `interpreting`, `searching`). `item` with the same id ends it."""
        index = self.index
        self.index += 1
        self._open = (item.get("id"), index)
        return (self.event("response.output_item.added", output_index=index, item=_in_progress(item))
                + self._starting(item, {"item_id": item.get("id", ""), "output_index": index}))

    def item(self, item: dict[str, Any]) -> bytes:
        """An output item once final: its events from `added` to `done`, or the rest of them after `started`."""
        out = b""
        if self._open is not None and self._open[0] == item.get("id"):
            index = self._open[1]
            self._open = None
            at = {"item_id": item.get("id", ""), "output_index": index}
        else:
            index = self.index
            self.index += 1
            at = {"item_id": item.get("id", ""), "output_index": index}
            out = self.event("response.output_item.added", output_index=index, item=_in_progress(item))
            out += self._starting(item, at)
        return out + self._finishing(item, at) + self.event("response.output_item.done", output_index=index, item=item)

    def _starting(self, item: dict[str, Any], at: dict[str, Any]) -> bytes:
        """The kind's events that need nothing of its result."""
        kind = item.get("type")
        out = b""
        if kind == "mcp_list_tools":
            out += self.event("response.mcp_list_tools.in_progress", **at)
        elif kind == "mcp_call":
            arguments = str(item.get("arguments") or "")
            out += self.event("response.mcp_call.in_progress", **at)
            out += self.event("response.mcp_call_arguments.delta", delta=arguments, **at)
            out += self.event("response.mcp_call_arguments.done", arguments=arguments, **at)
        elif kind == "code_interpreter_call":
            code = str(item.get("code") or "")
            out += self.event("response.code_interpreter_call.in_progress", **at)
            out += self.event("response.code_interpreter_call_code.delta", delta=code, **at)
            out += self.event("response.code_interpreter_call_code.done", code=code, **at)
            out += self.event("response.code_interpreter_call.interpreting", **at)
        elif kind == "file_search_call":
            out += self.event("response.file_search_call.in_progress", **at)
            out += self.event("response.file_search_call.searching", **at)
        return out

    def _finishing(self, item: dict[str, Any], at: dict[str, Any]) -> bytes:
        """The kind's events that tell its result."""
        kind = item.get("type")
        out = b""
        if kind == "message":
            out += self._message(item, at)
        elif kind == "mcp_list_tools":
            out += self.event("response.mcp_list_tools.failed" if item.get("error") else
                              "response.mcp_list_tools.completed", **at)
        elif kind == "mcp_call":
            out += self.event("response.mcp_call.failed" if item.get("error") else "response.mcp_call.completed",
                              **at)
        elif kind == "code_interpreter_call":
            out += self.event("response.code_interpreter_call.completed", **at)
        elif kind == "file_search_call":
            out += self.event("response.file_search_call.completed", **at)
        elif kind == "function_call":
            arguments = str(item.get("arguments") or "")
            out += self.event("response.function_call_arguments.delta", delta=arguments, **at)
            out += self.event("response.function_call_arguments.done", name=item.get("name"), arguments=arguments,
                              **at)
        return out

    def _message(self, item: dict[str, Any], at: dict[str, Any]) -> bytes:
        out = b""
        for content_index, part in enumerate(item.get("content") or []):
            if not isinstance(part, dict):
                continue
            where = {**at, "content_index": content_index}
            if part.get("type") != "output_text":
                out += self.event("response.content_part.added", part=part, **where)
                out += self.event("response.content_part.done", part=part, **where)
                continue
            text = str(part.get("text") or "")
            out += self.event("response.content_part.added", part={**part, "text": "", "annotations": []}, **where)
            for piece in pieces(text):
                out += self.event("response.output_text.delta", delta=piece, logprobs=[], **where)
            for annotation_index, annotation in enumerate(part.get("annotations") or []):
                out += self.event("response.output_text.annotation.added", annotation=annotation,
                                  annotation_index=annotation_index, **where)
            out += self.event("response.output_text.done", text=text, logprobs=[], **where)
            out += self.event("response.content_part.done", part=part, **where)
        return out


def _in_progress(item: dict[str, Any]) -> dict[str, Any]:
    """The item as `output_item.added` shows it: nothing of its result yet."""
    kind = item.get("type")
    shown = dict(item)
    if kind == "message":
        shown.update(content=[], status="in_progress")
    elif kind == "function_call":
        shown.update(arguments="", status="in_progress")
    elif kind == "mcp_call":
        shown.update(arguments="", output=None, error=None, status="in_progress")
    elif kind == "mcp_list_tools":
        shown.update(tools=[])
    elif kind in ("code_interpreter_call", "file_search_call"):
        shown.update(status="in_progress")
        if kind == "code_interpreter_call":
            shown.update(code="", outputs=None)
        else:
            shown.update(results=None)
    return shown
