"""Admission arithmetic: the budget from settings, what fits, what is evicted, and the machine as /proc tells it."""

from __future__ import annotations

import threading
from decimal import Decimal
from pathlib import Path

import pytest

from dockyard.domain.admission import (
    EVICT,
    RETRY_AFTER_DEFAULT,
    Admission,
    Budget,
    Machine,
    Sandbox,
    TooManySandboxes,
    admit,
    budget_from,
    parse_budget,
    read_machine,
    retry_after,
)

GI = 1024**3
MACHINE = Machine(memory_bytes=10 * GI, cpu_cores=Decimal(4))


def session(name: str, agent: str = "a", *, memory: int = GI, cpu: str = "1", last_used: float = 0.0,
            idle: float = 900.0) -> Sandbox:
    return Sandbox(("v-" + agent, name), ("default", agent), memory, Decimal(cpu), last_used, last_used + idle)


def version(agent: str = "a", memory: int = GI) -> Sandbox:
    return Sandbox(("v-" + agent, ""), ("default", agent), memory, Decimal(1))


def test_budgets_are_shares_amounts_or_none() -> None:
    assert parse_budget("80%", Decimal(10 * GI), "memory") == Decimal(8 * GI)
    assert parse_budget("6Gi", Decimal(10 * GI), "memory") == Decimal(6 * GI)
    assert parse_budget("500m", Decimal(4), "cpu") == Decimal("0.5")
    assert parse_budget("none", Decimal(4), "cpu") is None
    for bad in ("", "lots", "0", "-1Gi", "0%", "x%", "nan", "inf"):
        with pytest.raises(ValueError, match="--max-memory"):
            parse_budget(bad, Decimal(10 * GI), "memory")
    budget = budget_from(MACHINE)
    assert budget.memory_bytes == 8 * GI and budget.cpu_cores is None and budget.sessions_per_agent == 16
    with pytest.raises(ValueError, match="--on-full"):
        budget_from(MACHINE, on_full="panic")
    with pytest.raises(ValueError, match="at least 1"):
        budget_from(MACHINE, sessions_per_agent=0)


def test_a_sandbox_that_would_pass_the_budget_is_refused_with_the_next_release() -> None:
    budget = budget_from(MACHINE, "3Gi")
    live = [version(), session("s1", last_used=100.0, idle=60), session("s2", last_used=50.0, idle=60)]
    decision = admit(budget, live, session("s3"), now=120.0)
    assert not decision.admitted and decision.code == "TooManySandboxes"
    assert decision.retry_after == 1  # s2 was due at 110, so its release is any moment now
    assert "3Gi" in decision.message and "--max-memory" in decision.message
    assert admit(budget, live[:2], session("s3"), now=0).admitted
    # Its own session (already counted while it starts) is not counted twice.
    assert admit(budget, live, session("s2"), now=0).admitted
    assert retry_after([session("s", last_used=100.0, idle=60)], now=130.0) == 30
    assert retry_after([version()], now=0) == RETRY_AFTER_DEFAULT


def test_cpu_counts_when_it_has_a_budget() -> None:
    budget = budget_from(MACHINE, "none", "100%")
    live = [session(str(n), cpu="1") for n in range(3)]
    assert admit(budget, live, session("x", cpu="1"), now=0).admitted
    assert not admit(budget, live, session("x", cpu="1.5"), now=0).admitted
    many = [session(str(n), cpu="1") for n in range(30)]
    assert admit(budget_from(MACHINE, "none", "none", 100), many, session("x", cpu="4"), now=0).admitted


def test_evict_releases_the_longest_idle_sessions_never_a_version_sandbox() -> None:
    budget = budget_from(MACHINE, "3Gi", on_full=EVICT)
    live = [version(memory=GI), session("recent", "b", last_used=90.0), session("oldest", "c", last_used=10.0)]
    decision = admit(budget, live, session("new"), now=100.0)
    assert decision.admitted and [s.key[1] for s in decision.evict] == ["oldest"]
    bigger = admit(budget, live, session("new", memory=2 * GI), now=100.0)
    assert bigger.admitted and [s.key[1] for s in bigger.evict] == ["oldest", "recent"]
    # Versions hold their room: what evicting every session cannot make is refused.
    assert not admit(budget, live, session("new", memory=3 * GI), now=100.0).admitted
    # A version activation never evicts.
    assert not admit(budget, live, version("d"), now=100.0).admitted
    # Sessions still starting are not evictable.
    held = admit(budget, live, session("new"), now=100.0, evictable=lambda s: s.key[1] != "oldest")
    assert [s.key[1] for s in held.evict] == ["recent"]


def test_the_per_agent_cap_holds_and_evicts_only_that_agents_sessions() -> None:
    budget = Budget(MACHINE, None, None, sessions_per_agent=2)
    live = [version(), session("a1", last_used=5.0), session("a2", last_used=1.0), session("b1", "b")]
    refused = admit(budget, live, session("a3"), now=10.0)
    assert not refused.admitted and refused.code == "TooManySessions"
    assert "--max-sessions-per-agent 2" in refused.message
    assert admit(budget, live, session("b2", "b"), now=10.0).admitted
    evicting = admit(Budget(MACHINE, None, None, sessions_per_agent=2, on_full=EVICT), live, session("a3"), now=10.0)
    assert evicting.admitted and [s.key[1] for s in evicting.evict] == ["a2"]


def test_admission_holds_a_place_until_the_start_is_listed() -> None:
    admission = Admission(budget_from(MACHINE, "2Gi"))
    listed: list[Sandbox] = []
    with admission.starting(session("s1"), lambda: listed):
        with admission.starting(session("s2"), lambda: listed):
            with pytest.raises(TooManySandboxes) as refused:
                with admission.starting(session("s3"), lambda: listed):
                    pass  # pragma: no cover
            assert refused.value.status_code == 429 and refused.value.headers["Retry-After"].isdigit()
            listed.append(session("s1"))  # the runtime lists s1 now: not counted twice
            assert admission.usage(listed).memory_bytes == 2 * GI
    assert admission.usage([]).sandboxes == 0


def test_two_starts_at_once_never_take_the_same_room() -> None:
    admission = Admission(budget_from(MACHINE, "5Gi"))
    admitted: list[str] = []
    refused: list[str] = []
    gate = threading.Barrier(10)
    hold = threading.Event()

    def start(name: str) -> None:
        gate.wait()
        try:
            with admission.starting(session(name), list):
                admitted.append(name)
                hold.wait(5)
        except TooManySandboxes:
            refused.append(name)

    threads = [threading.Thread(target=start, args=(f"s{n}",)) for n in range(10)]
    for thread in threads:
        thread.start()
    for _ in range(250):  # every start decided while the admitted ones still hold their places
        if len(admitted) + len(refused) == 10:
            break
        threading.Event().wait(0.02)
    hold.set()
    for thread in threads:
        thread.join()
    assert (len(admitted), len(refused)) == (5, 5)


def test_evicted_room_is_not_counted_twice() -> None:
    admission = Admission(budget_from(MACHINE, "2Gi", on_full=EVICT))
    listed = [session("old", last_used=1.0), session("older", last_used=0.0)]
    with admission.starting(session("n1"), lambda: listed) as first:
        assert [s.key[1] for s in first.evict] == ["older"]
        with admission.starting(session("n2"), lambda: listed) as second:  # "older" is still listed, still going
            assert [s.key[1] for s in second.evict] == ["old"]
            with pytest.raises(TooManySandboxes):
                with admission.starting(session("n3"), lambda: listed):
                    pass  # pragma: no cover


def test_the_machine_is_lowered_to_dockyards_cgroup(tmp_path: Path) -> None:
    proc, cgroup = tmp_path / "proc", tmp_path / "cgroup"
    (proc / "self").mkdir(parents=True)
    (proc / "meminfo").write_text("MemTotal:       16384000 kB\nMemFree: 1 kB\n")
    (proc / "self" / "cgroup").write_text("0::/user.slice/dockyard.scope\n")
    assert read_machine(proc, cgroup).memory_bytes == 16384000 * 1024
    own = cgroup / "user.slice" / "dockyard.scope"
    own.mkdir(parents=True)
    (own / "memory.max").write_text(f"{4 * GI}\n")
    (own / "cpu.max").write_text("50000 100000\n")
    assert read_machine(proc, cgroup) == Machine(4 * GI, Decimal("0.5"))
    (own / "memory.max").write_text("max\n")
    (own / "cpu.max").write_text("max 100000\n")
    assert read_machine(proc, cgroup).memory_bytes == 16384000 * 1024
    # cgroup v1, as a container sees it: limits at the controller's root.
    (proc / "self" / "cgroup").write_text("4:memory:/docker/abc\n1:cpu,cpuacct:/docker/abc\n")
    (cgroup / "memory").mkdir()
    (cgroup / "memory" / "memory.limit_in_bytes").write_text(f"{2 * GI}\n")
    (cgroup / "cpu,cpuacct").mkdir()
    (cgroup / "cpu,cpuacct" / "cpu.cfs_quota_us").write_text("150000\n")
    (cgroup / "cpu,cpuacct" / "cpu.cfs_period_us").write_text("100000\n")
    machine = read_machine(proc, cgroup)
    assert machine.memory_bytes == 2 * GI and machine.cpu_cores <= Decimal("1.5")


def test_this_machine_is_read() -> None:
    machine = read_machine()
    assert machine.memory_bytes > 256 * 1024**2 and machine.cpu_cores >= Decimal("0.01")
