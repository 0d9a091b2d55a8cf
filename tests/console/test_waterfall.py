"""The trace waterfall's layout: tree order, depth, offsets and widths."""

from __future__ import annotations

from dockyard.console.waterfall import waterfall
from dockyard.store.traces import SpanRecord


def span(span_id: str, parent: str, start: int, end: int, name: str = "") -> SpanRecord:
    return SpanRecord(trace_id="1" * 32, span_id=span_id, parent_span_id=parent, name=name or span_id,
                      start_ns=start, end_ns=end, source="gateway")


def test_children_follow_their_parent_with_offsets_in_percent() -> None:
    spans = [span("up", "gw", 20_000_000, 100_000_000), span("gw", "", 0, 100_000_000),
             span("route", "gw", 0, 10_000_000), span("agent", "up", 30_000_000, 90_000_000)]
    bars, total_ms = waterfall(spans)
    assert total_ms == 100
    assert [(b.span.span_id, b.depth) for b in bars] == [("gw", 0), ("route", 1), ("up", 1), ("agent", 2)]
    agent = bars[3]
    assert (agent.offset_pct, agent.width_pct, agent.start_ms) == (30, 60, 30)


def test_a_missing_parent_makes_a_root_and_a_cycle_draws_each_span_once() -> None:
    bars, _ = waterfall([span("a", "caller", 0, 10), span("b", "c", 1, 5), span("c", "b", 2, 4)])
    assert [(b.span.span_id, b.depth) for b in bars] == [("a", 0), ("b", 0), ("c", 1)]  # b, c: a cycle, drawn once
    bars, _ = waterfall([span("x", "x", 0, 10)])
    assert [b.span.span_id for b in bars] == ["x"]


def test_no_spans_no_bars() -> None:
    assert waterfall([]) == ([], 0.0)
