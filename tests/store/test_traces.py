"""The trace store: filters, roots, and retention by age and by size."""

from __future__ import annotations

import time
from pathlib import Path

from dockyard.store.traces import SpanRecord, TraceStore, TraceWriter


def span(trace: str, span_id: str, parent: str = "", **fields: object) -> SpanRecord:
    return SpanRecord(trace_id=trace * 32, span_id=span_id * 16, parent_span_id=parent * 16 if parent else "",
                      name=f"span {span_id}", start_ns=int(fields.pop("start", 1)), end_ns=int(fields.pop("end", 2)),
                      source="agent", **fields)  # type: ignore[arg-type]


def test_traces_are_listed_by_any_span_that_matches(tmp_path: Path) -> None:
    store = TraceStore(tmp_path / "traces.db")
    store.add([span("a", "1", agent="echo", start=10, end=50), span("a", "2", "1", session_id="s1", start=20, end=30,
                                                                     status_code=2),
               span("b", "3", "9", agent="other", start=100, end=110)])
    listed = store.list_traces()
    assert [t.trace_id for t in listed] == ["b" * 32, "a" * 32]  # most recent first
    a = listed[1]
    assert (a.root, a.spans, a.errors, a.agent, a.session_id) == ("span 1", 2, 1, "echo", "s1")
    assert a.end_ns - a.start_ns == 40
    assert listed[0].root == "span 3"  # its parent never arrived: a root here
    assert [t.trace_id for t in store.list_traces(session_id="s1")] == ["a" * 32]
    assert [t.trace_id for t in store.list_traces(agent="other")] == ["b" * 32]
    assert store.list_traces(agent="echo", session_id="nope") == []
    assert [s.span_id for s in store.trace("a" * 32)] == ["1" * 16, "2" * 16]


def test_spans_past_their_age_are_pruned(tmp_path: Path) -> None:
    store = TraceStore(tmp_path / "traces.db")
    store.add([span("a", "1")])
    assert store.prune(max_age_seconds=3600, max_bytes=1 << 30) == 0
    assert store.prune(max_age_seconds=3600, max_bytes=1 << 30, now=time.time() + 7200) == 1
    assert store.count() == 0


def test_the_oldest_spans_go_once_the_store_is_past_its_size(tmp_path: Path) -> None:
    store = TraceStore(tmp_path / "traces.db")
    for batch in range(20):
        store.add([span(f"{batch % 16:x}", f"{i % 16:x}", attributes={"blob": "x" * 2000}) for i in range(10)])
    assert store.used_bytes() > 300_000
    removed = store.prune(max_age_seconds=3600, max_bytes=150_000)
    assert removed > 0 and store.used_bytes() <= 150_000 and store.count() == 200 - removed
    # The file itself shrinks: freed pages go back to the file system.
    assert (tmp_path / "traces.db").stat().st_size <= 200_000


def test_the_writer_writes_off_the_callers_thread_and_prunes(tmp_path: Path) -> None:
    store = TraceStore(tmp_path / "traces.db")
    writer = TraceWriter(store, max_age_seconds=3600, max_bytes=1 << 30, prune_interval_seconds=0.05)
    writer.start()
    writer.submit([span("a", "1")])
    writer.submit([span("a", "2", "1")])
    writer.close()
    assert store.count() == 2
