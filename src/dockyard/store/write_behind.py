"""Writes a request need not wait for: made on one background thread, in the order they were asked for.

The gateway records, for each response, which session made it, and marks a session used on every
request; neither changes the answer the caller is waiting for, so neither should add a database
write to it. A reader that must see such a write (a GET of a response made a moment ago) calls
`flush()` first when it misses.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from typing import Any

log = logging.getLogger("dockyard.store")

_STOP = object()


class WriteBehind:
    def __init__(self, name: str = "dockyard-write-behind") -> None:
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, write: Callable[..., object], *args: object) -> None:
        self._queue.put((write, args))

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until everything submitted so far is written; False if that took longer than `timeout`."""
        done = threading.Event()
        self._queue.put(done)
        return done.wait(timeout)

    def close(self, timeout: float = 5.0) -> None:
        self._queue.put(_STOP)
        self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            if isinstance(item, threading.Event):
                item.set()
                continue
            write, args = item
            try:
                write(*args)
            except Exception:  # a lost write must not stop the ones after it
                log.exception("background write %s failed", getattr(write, "__qualname__", write))
