"""The loop's event stream: a platform tool call's events up to its run are sent before it runs (`started`),
the rest after (`item`), under one output index and item id; other items' events all at once."""

from __future__ import annotations

import json
from typing import Any

from dockyard.tools.events import LoopEvents


def parsed(raw: bytes) -> list[dict[str, Any]]:
    return [json.loads(block.split(b"data: ", 1)[1]) for block in raw.split(b"\n\n") if block]


def test_a_tool_calls_events_are_split_around_its_run() -> None:
    events = LoopEvents()
    message = {"id": "msg_1", "type": "message", "role": "assistant", "status": "completed",
               "content": [{"type": "output_text", "text": "Running it.", "annotations": []}]}
    first = parsed(events.item(message))
    assert [e["type"] for e in first][0] == "response.output_item.added" and first[-1]["output_index"] == 0

    for kind, started_events, finished_events in (
            ("code_interpreter_call", ["response.code_interpreter_call.in_progress",
                                       "response.code_interpreter_call_code.delta",
                                       "response.code_interpreter_call_code.done",
                                       "response.code_interpreter_call.interpreting"],
             ["response.code_interpreter_call.completed"]),
            ("file_search_call", ["response.file_search_call.in_progress", "response.file_search_call.searching"],
             ["response.file_search_call.completed"])):
        index = events.index
        running = {"id": f"{kind}_1", "type": kind, "status": "in_progress", "code": "print(6 * 7)"}
        before = parsed(events.started(running))
        assert [e["type"] for e in before] == ["response.output_item.added", *started_events]
        assert before[0]["item"]["status"] == "in_progress" and before[0]["output_index"] == index
        assert {e["item_id"] for e in before[1:]} == {running["id"]}
        after = parsed(events.item({**running, "status": "completed"}))
        assert [e["type"] for e in after] == [*finished_events, "response.output_item.done"]
        assert after[-1]["output_index"] == index and after[-1]["item"]["status"] == "completed"
        assert events.index == index + 1

    # An item that was not started gets all its events at once, at the next index.
    whole = parsed(events.item({"id": "fs_2", "type": "file_search_call", "status": "completed", "queries": ["q"]}))
    assert [e["type"] for e in whole] == ["response.output_item.added", "response.file_search_call.in_progress",
                                          "response.file_search_call.searching",
                                          "response.file_search_call.completed", "response.output_item.done"]
    assert whole[0]["output_index"] == 3
