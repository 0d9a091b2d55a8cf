"""Spans, from agents (through the OTLP receiver) and from dockyard's own gateway, in a file of their own.

Traces live in `<home>/traces.db`, not in the main store: they are many, short-lived and write-heavy,
they are pruned by age and by size, and losing them loses nothing the control plane needs. So they get
their own small schema, created on open (no migrations: a schema change may simply start a new file).

A span row keeps what `dockyard traces` filters and draws by (trace, parent, name, times, status, the
agent, version, session and response it belongs to) in columns, and everything else (attributes,
resource, events) as JSON. Writes from the request path go through `TraceWriter`, a queue drained by
one thread, so recording a gateway span costs the request a `put` and nothing more.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Engine,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    delete,
    event,
    func,
    insert,
    select,
)

log = logging.getLogger("dockyard.traces")

_metadata = MetaData()
spans_table = Table(
    "spans", _metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("trace_id", String(32), nullable=False),
    Column("span_id", String(16), nullable=False),
    Column("parent_span_id", String(16), nullable=False, default=""),
    Column("name", Text, nullable=False),
    Column("kind", Integer, nullable=False, default=0),
    Column("start_ns", BigInteger, nullable=False),
    Column("end_ns", BigInteger, nullable=False),
    # OTLP's status codes: 0 unset, 1 ok, 2 error.
    Column("status_code", Integer, nullable=False, default=0),
    Column("status_message", Text, nullable=False, default=""),
    Column("service", Text, nullable=False, default=""),
    # Who sent it: "gateway" (dockyard itself), "agent" (a sandbox's identity), "operator" (a person's token).
    Column("source", String(16), nullable=False),
    Column("project", Text, nullable=False, default=""),
    Column("agent", Text, nullable=False, default=""),
    Column("version", Text, nullable=False, default=""),
    Column("session_id", Text, nullable=False, default=""),
    Column("response_id", Text, nullable=False, default=""),
    Column("attributes", Text, nullable=False, default="{}"),
    Column("resource", Text, nullable=False, default="{}"),
    Column("events", Text, nullable=False, default="[]"),
    Column("received_at", BigInteger, nullable=False),
)
Index("ix_spans_trace", spans_table.c.trace_id)
Index("ix_spans_received", spans_table.c.received_at)
Index("ix_spans_agent", spans_table.c.agent, spans_table.c.received_at)
Index("ix_spans_session", spans_table.c.session_id)
Index("ix_spans_response", spans_table.c.response_id)


@dataclass(frozen=True)
class SpanRecord:
    trace_id: str
    span_id: str
    name: str
    start_ns: int
    end_ns: int
    source: str
    parent_span_id: str = ""
    kind: int = 0
    status_code: int = 0
    status_message: str = ""
    service: str = ""
    project: str = ""
    agent: str = ""
    version: str = ""
    session_id: str = ""
    response_id: str = ""
    attributes: dict[str, Any] = field(default_factory=dict)
    resource: dict[str, Any] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)

    @property
    def duration_ms(self) -> float:
        return max(0, self.end_ns - self.start_ns) / 1e6

    def to_json(self) -> dict[str, Any]:
        return {
            "trace_id": self.trace_id, "span_id": self.span_id, "parent_span_id": self.parent_span_id or None,
            "name": self.name, "kind": self.kind, "start_time_unix_nano": self.start_ns,
            "end_time_unix_nano": self.end_ns, "duration_ms": round(self.duration_ms, 3),
            "status": {"code": self.status_code, "message": self.status_message}, "service": self.service,
            "source": self.source, "project": self.project or None, "agent": self.agent or None,
            "version": self.version or None, "session_id": self.session_id or None,
            "response_id": self.response_id or None, "attributes": self.attributes, "resource": self.resource,
            "events": self.events,
        }


@dataclass(frozen=True)
class TraceSummary:
    trace_id: str
    root: str  # the name of the earliest span without a parent in the trace (or the earliest span)
    start_ns: int
    end_ns: int
    spans: int
    errors: int
    agent: str
    version: str
    session_id: str
    response_id: str

    def to_json(self) -> dict[str, Any]:
        return {
            "trace_id": self.trace_id, "root": self.root, "start_time_unix_nano": self.start_ns,
            "duration_ms": round(max(0, self.end_ns - self.start_ns) / 1e6, 3), "spans": self.spans,
            "errors": self.errors, "agent": self.agent or None, "version": self.version or None,
            "session_id": self.session_id or None, "response_id": self.response_id or None,
        }


class TraceStore:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.engine = _open(path)
        _metadata.create_all(self.engine)

    def add(self, spans: list[SpanRecord]) -> None:
        if not spans:
            return
        now = int(time.time())
        rows = [{
            "trace_id": s.trace_id, "span_id": s.span_id, "parent_span_id": s.parent_span_id, "name": s.name,
            "kind": s.kind, "start_ns": s.start_ns, "end_ns": s.end_ns, "status_code": s.status_code,
            "status_message": s.status_message, "service": s.service, "source": s.source, "project": s.project,
            "agent": s.agent, "version": s.version, "session_id": s.session_id, "response_id": s.response_id,
            "attributes": json.dumps(s.attributes, default=str), "resource": json.dumps(s.resource, default=str),
            "events": json.dumps(s.events, default=str), "received_at": now,
        } for s in spans]
        with self.engine.begin() as connection:
            connection.execute(insert(spans_table), rows)

    def list_traces(self, *, project: str | None = None, agent: str | None = None, session_id: str | None = None,
                    response_id: str | None = None, limit: int = 20) -> list[TraceSummary]:
        """The most recent traces (by their first span) that have a span matching every filter given."""
        c = spans_table.c
        matching = select(c.trace_id).distinct()
        for column, value in ((c.project, project), (c.agent, agent), (c.session_id, session_id),
                              (c.response_id, response_id)):
            if value:
                matching = matching.where(column == value)
        query = (select(c.trace_id, func.min(c.start_ns), func.max(c.end_ns), func.count(),
                        func.sum((c.status_code == 2).cast(Integer)), func.max(c.agent), func.max(c.version),
                        func.max(c.session_id), func.max(c.response_id))
                 .where(c.trace_id.in_(matching)).group_by(c.trace_id)
                 .order_by(func.min(c.start_ns).desc()).limit(limit))
        with self.engine.connect() as connection:
            rows = connection.execute(query).all()
            roots = self._roots(connection, [row[0] for row in rows])
        return [TraceSummary(trace_id=row[0], root=roots.get(row[0], ""), start_ns=row[1], end_ns=row[2],
                             spans=row[3], errors=row[4] or 0, agent=row[5] or "", version=row[6] or "",
                             session_id=row[7] or "", response_id=row[8] or "") for row in rows]

    @staticmethod
    def _roots(connection: Any, trace_ids: list[str]) -> dict[str, str]:
        if not trace_ids:
            return {}
        c = spans_table.c
        rows = connection.execute(select(c.trace_id, c.span_id, c.parent_span_id, c.name, c.start_ns)
                                  .where(c.trace_id.in_(trace_ids)).order_by(c.start_ns)).all()
        present = {(row[0], row[1]) for row in rows}
        roots: dict[str, str] = {}
        for trace_id, _span_id, parent, name, _start in rows:
            # A span whose parent never arrived (a caller's, outside dockyard) is a root here too.
            if trace_id not in roots and (not parent or (trace_id, parent) not in present):
                roots[trace_id] = name
        return roots

    def trace(self, trace_id: str) -> list[SpanRecord]:
        c = spans_table.c
        with self.engine.connect() as connection:
            rows = connection.execute(select(spans_table).where(c.trace_id == trace_id).order_by(c.start_ns)).all()
        return [SpanRecord(
            trace_id=row.trace_id, span_id=row.span_id, parent_span_id=row.parent_span_id, name=row.name,
            kind=row.kind, start_ns=row.start_ns, end_ns=row.end_ns, status_code=row.status_code,
            status_message=row.status_message, service=row.service, source=row.source, project=row.project,
            agent=row.agent, version=row.version, session_id=row.session_id, response_id=row.response_id,
            attributes=json.loads(row.attributes), resource=json.loads(row.resource), events=json.loads(row.events),
        ) for row in rows]

    def count(self) -> int:
        with self.engine.connect() as connection:
            return int(connection.execute(select(func.count()).select_from(spans_table)).scalar_one())

    def used_bytes(self) -> int:
        """Bytes the spans take in the file: its pages minus the free ones."""
        with self.engine.connect() as connection:
            pages = connection.exec_driver_sql("PRAGMA page_count").scalar_one()
            free = connection.exec_driver_sql("PRAGMA freelist_count").scalar_one()
            size = connection.exec_driver_sql("PRAGMA page_size").scalar_one()
        return int((pages - free) * size)

    def prune(self, *, max_age_seconds: float, max_bytes: int, now: float | None = None) -> int:
        """Drop spans received more than `max_age_seconds` ago, then the oldest until under `max_bytes`.

        Returns how many spans went. Freed pages go back to the file system (incremental vacuum), so the
        file itself stays near the bound rather than at its high-water mark.
        """
        c = spans_table.c
        cutoff = int((now if now is not None else time.time()) - max_age_seconds)
        removed = 0
        with self.engine.begin() as connection:
            removed += connection.execute(delete(spans_table).where(c.received_at < cutoff)).rowcount or 0
        while self.used_bytes() > max_bytes:
            total = self.count()
            if total == 0:
                break
            # The oldest tenth (at least one span) at a time: each pass frees pages, then measures again.
            oldest = select(c.id).order_by(c.id).limit(max(1, total // 10))
            with self.engine.begin() as connection:
                removed += connection.execute(delete(spans_table).where(c.id.in_(oldest))).rowcount or 0
        if removed:
            self._vacuum()
        return removed

    def _vacuum(self) -> None:
        """Hand freed pages back to the file system, and checkpoint so the main file shrinks now.

        Through `executescript`: sqlite3's `execute` steps `PRAGMA incremental_vacuum` once, freeing one page."""
        raw = self.engine.raw_connection()
        try:
            sqlite = raw.driver_connection
            assert sqlite is not None
            sqlite.executescript("PRAGMA incremental_vacuum; PRAGMA wal_checkpoint(TRUNCATE);")
        finally:
            raw.close()

    def close(self) -> None:
        self.engine.dispose()


def _open(path: Path) -> Engine:
    engine = create_engine(f"sqlite:///{path}", connect_args={"check_same_thread": False, "timeout": 30})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        # Set before the first table exists, so pages freed by pruning can be handed back.
        cursor.execute("PRAGMA auto_vacuum=INCREMENTAL")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    return engine


_STOP = object()


class TraceWriter:
    """Spans handed over from the request path, written by one thread; the store pruned periodically."""

    def __init__(self, store: TraceStore, *, max_age_seconds: float, max_bytes: int,
                 prune_interval_seconds: float, max_queued: int = 10_000) -> None:
        self.store = store
        self.max_age_seconds = max_age_seconds
        self.max_bytes = max_bytes
        self.prune_interval_seconds = prune_interval_seconds
        self._queue: queue.Queue[object] = queue.Queue(maxsize=max_queued)
        self._thread: threading.Thread | None = None
        self.dropped = 0

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="dockyard-traces", daemon=True)
            self._thread.start()

    def submit(self, spans: list[SpanRecord] | Callable[[], list[SpanRecord]]) -> None:
        """Never blocks: when the writer is this far behind, the spans are dropped (and counted).

        A callable is called on the writer's thread: the request path hands over the work of making spans too."""
        try:
            self._queue.put_nowait(spans)
        except queue.Full:
            self.dropped += len(spans) if isinstance(spans, list) else 1

    def close(self, timeout: float = 5.0) -> None:
        if self._thread is not None:
            self._queue.put(_STOP)
            self._thread.join(timeout)
            self._thread = None

    def _run(self) -> None:
        next_prune = time.monotonic()
        while True:
            timeout = max(0.0, next_prune - time.monotonic())
            try:
                item = self._queue.get(timeout=timeout)
            except queue.Empty:
                item = None
            pending = [] if item is None or item is _STOP else [item]
            stop = item is _STOP
            while not stop:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is _STOP:
                    stop = True
                else:
                    pending.append(more)
            try:
                batch: list[SpanRecord] = []
                for spans in pending:
                    batch.extend(spans if isinstance(spans, list) else spans())  # type: ignore[operator]
                self.store.add(batch)
                if time.monotonic() >= next_prune:
                    next_prune = time.monotonic() + self.prune_interval_seconds
                    removed = self.store.prune(max_age_seconds=self.max_age_seconds, max_bytes=self.max_bytes)
                    if removed:
                        log.info("pruned %d span(s) past the traces' retention", removed)
            except Exception:  # a full disk must not take the writer down: log, keep going
                log.exception("writing spans failed")
            if stop:
                return
