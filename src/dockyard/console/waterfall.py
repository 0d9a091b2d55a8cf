"""A trace's spans laid out as a waterfall: tree order, depth, and each bar's offset and width in percent.

Pure arithmetic over `SpanRecord`s, so the page template only draws. A span whose parent never arrived
(the caller's own span, outside dockyard) is drawn as a root.
"""

from __future__ import annotations

from dataclasses import dataclass

from dockyard.store.traces import SpanRecord


@dataclass(frozen=True)
class Bar:
    span: SpanRecord
    depth: int
    offset_pct: float
    width_pct: float
    start_ms: float


def waterfall(spans: list[SpanRecord]) -> tuple[list[Bar], float]:
    """The bars in tree order (parents before children, siblings by start) and the trace's length in ms."""
    if not spans:
        return [], 0.0
    start = min(s.start_ns for s in spans)
    end = max(max(s.end_ns, s.start_ns) for s in spans)
    total = max(end - start, 1)
    ids = {s.span_id for s in spans}
    children: dict[str, list[SpanRecord]] = {}
    roots: list[SpanRecord] = []
    for span in sorted(spans, key=lambda s: (s.start_ns, s.span_id)):
        if span.parent_span_id and span.parent_span_id in ids and span.parent_span_id != span.span_id:
            children.setdefault(span.parent_span_id, []).append(span)
        else:
            roots.append(span)
    bars: list[Bar] = []
    seen: set[str] = set()
    ordered = sorted(spans, key=lambda s: (s.start_ns, s.span_id))
    # Spans that only reach each other (a cycle in what a sender claimed) have no root: they start a tree too.
    for tree in (*roots, *ordered):
        pending = [(tree, 0)]
        while pending:
            span, depth = pending.pop()
            if span.span_id in seen:
                continue
            seen.add(span.span_id)
            offset = (span.start_ns - start) / total * 100
            width = max(span.end_ns - span.start_ns, 0) / total * 100
            bars.append(Bar(span, depth, round(offset, 3), round(max(width, 0.3), 3), (span.start_ns - start) / 1e6))
            pending.extend((child, depth + 1) for child in reversed(children.get(span.span_id, [])))
    return bars, total / 1e6
