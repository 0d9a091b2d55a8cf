"""Housekeeping: what dockyard removes on its own once it has outlived its use.

Each kind of kept thing knows what "expired" means for it (a retention period, an expiry plus a grace, an
item's TTL); the reconciler's loop, which already wakes every few seconds, runs them all once per prune
interval. One loop, no thread of their own: a sweep is one indexed DELETE or a handful of them. A sweep
that fails (a locked or full database) is logged and tried again at the next interval.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dockyard.store.state_stores import StateStores
    from dockyard.store.tool_responses import ToolResponseStore
    from dockyard.store.vector_stores import VectorStoreRepository

DAY = 24 * 3600.0


@dataclass(frozen=True)
class Retention:
    # The tool loop's Responses (store/tool_responses.py), as OpenAI keeps them.
    tool_responses_seconds: float = 30 * DAY
    # Vector stores past their `expires_after` show `expired` this long, then go (files, chunks, index; the
    # uploaded files stay).
    expired_vector_store_grace_seconds: float = DAY


@dataclass(frozen=True)
class Sweep:
    """One kind of removal: what it removes (for the log) and how; `run` answers how many it removed."""

    what: str
    run: Callable[[], int]


def sweeps(retention: Retention, *, tool_responses: ToolResponseStore | None = None,
           vector_stores: VectorStoreRepository | None = None,
           state_stores: StateStores | None = None) -> list[Sweep]:
    found: list[Sweep] = []
    if tool_responses is not None:
        found.append(Sweep("tool loop response(s) past their retention", lambda: tool_responses.prune(
            older_than=time.time() - retention.tool_responses_seconds)))
    if vector_stores is not None:
        found.append(Sweep("expired vector store(s)", lambda: len(vector_stores.delete_expired(
            grace_seconds=retention.expired_vector_store_grace_seconds))))
    if state_stores is not None:
        found.append(Sweep("expired state store item(s)", state_stores.purge_expired))
    return found
