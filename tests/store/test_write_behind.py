from __future__ import annotations

import threading
import time

from dockyard.store.write_behind import WriteBehind


def test_writes_run_in_order_and_flush_waits_for_them() -> None:
    writes = WriteBehind()
    done: list[int] = []

    def slow(n: int) -> None:
        time.sleep(0.01)
        done.append(n)

    for n in range(5):
        writes.submit(slow, n)
    assert writes.flush(timeout=5)
    assert done == [0, 1, 2, 3, 4]
    writes.close()


def test_a_failing_write_does_not_stop_the_next() -> None:
    writes = WriteBehind()
    done: list[str] = []

    def broken() -> None:
        raise RuntimeError("database is locked")

    writes.submit(broken)
    writes.submit(done.append, "after")
    assert writes.flush(timeout=5)
    assert done == ["after"]
    writes.close()


def test_flush_reports_a_write_that_takes_too_long() -> None:
    writes = WriteBehind()
    release = threading.Event()
    writes.submit(release.wait)
    assert writes.flush(timeout=0.05) is False
    release.set()
    assert writes.flush(timeout=5)
    writes.close()
