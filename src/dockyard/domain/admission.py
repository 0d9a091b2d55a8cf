"""Admission control: whether one more sandbox fits in what dockyard may use, and what to release to make room.

Every sandbox states its limits (definition.cpu and definition.memory, up to 4 cores and 8Gi each); nothing
stops a busy agent from opening sessions until the machine runs out of memory, so dockyard keeps the sum of
the live sandboxes' limits within a budget: a share of the machine (`--max-memory 80%`, `--max-cpu 100%`) or
an amount (`6Gi`, `2`). Limits are what is counted, not what the sandboxes use at the moment: a sandbox may
grow to its limit at any time, and admitting on current use would let a quiet hour overcommit the machine.

The arithmetic here is pure (lists in, a decision out); `Admission` adds the one piece of state the
arithmetic needs, the sandboxes admitted a moment ago that the runtime does not list yet, so two cold starts
at the same instant cannot both take the last room. What a refused start answers is `TooManySandboxes` or
`TooManySessions`, 429 with `Retry-After` (when the next idle release is due), Azure's shape for "busy".
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

from dockyard.domain.errors import DockyardError
from dockyard.domain.resources import parse_quantity

REJECT = "reject"
EVICT = "evict"
ON_FULL = (REJECT, EVICT)
DEFAULT_MAX_MEMORY = "80%"
# CPU is time-shared: sandboxes whose CPU limits add up past the cores slow each other down, none is killed
# (memory past the machine's gets one killed). So no CPU budget unless asked for (`--max-cpu 100%`).
DEFAULT_MAX_CPU = "none"
DEFAULT_SESSIONS_PER_AGENT = 16
UNLIMITED = ("none", "unlimited", "off")
# Retry-After when no live session is due to be released (only version sandboxes hold the budget).
RETRY_AFTER_DEFAULT = 30
RETRY_AFTER_MAX = 300


class TooManySandboxes(DockyardError):
    """No room for one more sandbox: a 429 the SDKs retry after `retry_after` seconds."""

    status_code = 429
    code = "TooManySandboxes"

    def __init__(self, message: str, *, retry_after: int, code: str | None = None) -> None:
        super().__init__(message, code=code)
        self.retry_after = retry_after
        self.headers = {"Retry-After": str(retry_after)}


@dataclass(frozen=True)
class Machine:
    """What this machine (or the cgroup dockyard runs in, if smaller) has."""

    memory_bytes: int
    cpu_cores: Decimal


@dataclass(frozen=True)
class Budget:
    """What sandboxes' limits may add up to; None means no budget for that resource."""

    machine: Machine
    memory_bytes: int | None
    cpu_cores: Decimal | None
    sessions_per_agent: int = DEFAULT_SESSIONS_PER_AGENT
    on_full: str = REJECT


@dataclass(frozen=True)
class Sandbox:
    """A live sandbox (running or being started) as admission sees it."""

    key: tuple[str, str]  # (version uid, session id); session "" is a version's own sandbox
    agent: tuple[str, str]  # (project, agent name)
    memory_bytes: int
    cpu_cores: Decimal
    # When its session was last used, and when that session's idle release is due (None: a version sandbox).
    last_used: float = 0.0
    release_due: float | None = None

    @property
    def is_session(self) -> bool:
        return bool(self.key[1])


@dataclass(frozen=True)
class Usage:
    memory_bytes: int
    cpu_cores: Decimal
    sandboxes: int


@dataclass(frozen=True)
class Decision:
    admitted: bool
    evict: tuple[Sandbox, ...] = ()
    code: str = ""
    message: str = ""
    retry_after: int = RETRY_AFTER_DEFAULT


def usage(live: Iterable[Sandbox]) -> Usage:
    sandboxes = list(live)
    return Usage(sum(s.memory_bytes for s in sandboxes), sum((s.cpu_cores for s in sandboxes), Decimal(0)),
                 len(sandboxes))


def fits(budget: Budget, live: Iterable[Sandbox], memory_bytes: int, cpu_cores: Decimal) -> bool:
    used = usage(live)
    return ((budget.memory_bytes is None or used.memory_bytes + memory_bytes <= budget.memory_bytes)
            and (budget.cpu_cores is None or used.cpu_cores + cpu_cores <= budget.cpu_cores))


def retry_after(live: Iterable[Sandbox], now: float) -> int:
    """Seconds until the first live session's idle release frees room, within [1, RETRY_AFTER_MAX]."""
    due = [s.release_due for s in live if s.release_due is not None]
    if not due:
        return RETRY_AFTER_DEFAULT
    return max(1, min(RETRY_AFTER_MAX, int(min(due) - now + 0.999)))


def admit(budget: Budget, live: Sequence[Sandbox], new: Sandbox, *, now: float,
          evictable: Callable[[Sandbox], bool] = lambda _: True) -> Decision:
    """Whether `new` may start beside `live`, and (with on_full=evict) which session sandboxes to release first:
    the longest-idle ones, of any agent for the budget and of `new`'s agent for its session cap.

    Version sandboxes are never evicted (a version is served by its own), nor is `new`'s own session.
    """
    others = [s for s in live if s.key != new.key]
    victims: list[Sandbox] = []
    candidates = sorted((s for s in others if s.is_session and evictable(s)), key=lambda s: s.last_used)

    def remaining() -> list[Sandbox]:
        return [s for s in others if s not in victims]

    if new.is_session:
        same_agent = [s for s in others if s.is_session and s.agent == new.agent]
        excess = len(same_agent) + 1 - budget.sessions_per_agent
        if excess > 0:
            theirs = [s for s in candidates if s.agent == new.agent][:excess]
            if budget.on_full != EVICT or len(theirs) < excess:
                return Decision(False, code="TooManySessions", retry_after=retry_after(same_agent, now), message=(
                    f"Agent {new.agent[1]!r} already has {len(same_agent)} live sessions, the most dockyard runs "
                    f"for one agent (--max-sessions-per-agent {budget.sessions_per_agent}). Retry after idle "
                    "sessions are released, delete sessions you no longer need, or raise the limit."))
            victims.extend(theirs)
    if budget.on_full == EVICT and new.is_session:
        for candidate in candidates:
            if fits(budget, remaining(), new.memory_bytes, new.cpu_cores):
                break
            if candidate not in victims:
                victims.append(candidate)
    if fits(budget, remaining(), new.memory_bytes, new.cpu_cores):
        return Decision(True, evict=tuple(victims))
    used = usage(others)
    return Decision(False, code="TooManySandboxes", retry_after=retry_after(others, now), message=(
        f"No room for another sandbox of {new.agent[1]!r} ({_gi(new.memory_bytes)} memory, {new.cpu_cores} cpu): "
        f"{used.sandboxes} live sandboxes hold {_gi(used.memory_bytes)} of {_limit(budget.memory_bytes, _gi)} memory "
        f"and {used.cpu_cores} of {_limit(budget.cpu_cores, str)} cpu. Retry later, delete sessions or versions you "
        "no longer need, lower definition.memory/cpu, or start dockyard with a larger --max-memory/--max-cpu "
        "(or --on-full evict to release the longest-idle session instead)."))


def _gi(value: int) -> str:
    return f"{value / 1024**3:.4g}Gi"


def _limit(value: object, show: Callable[..., str]) -> str:
    return "unlimited" if value is None else show(value)


# -- the budget from settings ---------------------------------------------------------------------------


def parse_budget(text: str, total: Decimal, what: str) -> Decimal | None:
    """`80%` of `total`, an amount (`6Gi`, `2`, `500m`), or None for `none`; ValueError with a how-to."""
    spelled = str(text).strip()
    if spelled.lower() in UNLIMITED:
        return None
    try:
        value = (Decimal(spelled[:-1]) / 100 * total) if spelled.endswith("%") else parse_quantity(spelled)
    except (ValueError, ArithmeticError):
        raise ValueError(f"--max-{what} {spelled!r} is not a budget: give a share of the machine such as 80%, "
                         f"an amount such as {'6Gi' if what == 'memory' else '2'}, or none.") from None
    if not value.is_finite() or value <= 0:
        raise ValueError(f"--max-{what} {spelled!r} must be more than zero (or none for no budget).")
    return value


def budget_from(machine: Machine, max_memory: str = DEFAULT_MAX_MEMORY, max_cpu: str = DEFAULT_MAX_CPU,
                sessions_per_agent: int = DEFAULT_SESSIONS_PER_AGENT, on_full: str = REJECT) -> Budget:
    if on_full not in ON_FULL:
        raise ValueError(f"--on-full {on_full!r} is not one of {', '.join(ON_FULL)}.")
    if sessions_per_agent < 1:
        raise ValueError(f"--max-sessions-per-agent {sessions_per_agent} must be at least 1.")
    memory = parse_budget(max_memory, Decimal(machine.memory_bytes), "memory")
    return Budget(machine, None if memory is None else int(memory), parse_budget(max_cpu, machine.cpu_cores, "cpu"),
                  sessions_per_agent, on_full)


def read_machine(proc: Path = Path("/proc"), cgroup: Path = Path("/sys/fs/cgroup")) -> Machine:
    """The machine's memory and cores, lowered to the cgroup limits dockyard itself runs under (v2 or v1)."""
    memory = _meminfo_total(proc / "meminfo") or os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    cores = Decimal(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)
    own = _own_cgroup(proc / "self" / "cgroup")
    for folder in _cgroup_folders(cgroup, own):
        limit = _number(folder / "memory.max") or _number(folder / "memory.limit_in_bytes")
        if limit is not None and 0 < limit < memory:
            memory = limit
        quota = _cpu_quota(folder)
        if quota is not None and quota < cores:
            cores = quota
    return Machine(memory_bytes=memory, cpu_cores=cores)


def _meminfo_total(path: Path) -> int | None:
    try:
        for line in path.read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _own_cgroup(path: Path) -> dict[str, str]:
    """Controller (or "" for v2) to the cgroup path dockyard is in."""
    found: dict[str, str] = {}
    try:
        for line in path.read_text().splitlines():
            _, controllers, where = line.split(":", 2)
            for controller in controllers.split(",") if controllers else [""]:
                found[controller] = where
    except (OSError, ValueError):
        pass
    return found


def _cgroup_folders(root: Path, own: dict[str, str]) -> Iterator[Path]:
    """Where the limits that apply to dockyard may be written: its own cgroup's folder for v2 and for v1's
    memory and cpu controllers, each as mounted here (a container sees its own cgroup as the root)."""
    for base, where in ((root, own.get("")), (root / "memory", own.get("memory")), (root / "cpu", own.get("cpu")),
                        (root / "cpu,cpuacct", own.get("cpu,cpuacct") or own.get("cpu"))):
        yield base
        if where and where != "/":
            yield base / where.lstrip("/")


def _number(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
        return None if text == "max" else int(text)
    except (OSError, ValueError):
        return None


def _cpu_quota(folder: Path) -> Decimal | None:
    try:
        quota, period = (folder / "cpu.max").read_text().split()
        return None if quota == "max" else Decimal(quota) / Decimal(period)
    except (OSError, ValueError, ArithmeticError):
        pass
    quota_us, period_us = _number(folder / "cpu.cfs_quota_us"), _number(folder / "cpu.cfs_period_us")
    if quota_us is None or period_us is None or quota_us <= 0 or period_us <= 0:
        return None
    return Decimal(quota_us) / Decimal(period_us)


# -- the state: sandboxes admitted but not listed yet -----------------------------------------------------


@dataclass
class Admission:
    """The budget, and the sandboxes admitted a moment ago that the runtime may not list yet.

    `live` is read under the lock, so two starts decide one after the other; a start holds its place from
    its decision until `starting` exits (by then the runtime lists it, or it failed). Sandboxes chosen for
    eviction are left out of every later decision, so two starts never count the same freed room twice.
    """

    budget: Budget
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _starting: dict[tuple[str, str], Sandbox] = field(default_factory=dict, repr=False)
    _evicting: set[tuple[str, str]] = field(default_factory=set, repr=False)

    @contextmanager
    def starting(self, new: Sandbox, live: Callable[[], list[Sandbox]]) -> Iterator[Decision]:
        """Decide on `new` (raising TooManySandboxes when it does not fit) and hold its place while it starts."""
        with self._lock:
            current = self._current(live())
            decision = admit(self.budget, current, new, now=time.time(),
                             evictable=lambda s: s.key not in self._starting)
            if not decision.admitted:
                raise TooManySandboxes(decision.message, retry_after=decision.retry_after, code=decision.code)
            self._starting[new.key] = new
            self._evicting.update(s.key for s in decision.evict)
        try:
            yield decision
        finally:
            with self._lock:
                self._starting.pop(new.key, None)

    def evicted(self, key: tuple[str, str]) -> None:
        """An eviction is done: the runtime no longer lists that sandbox as running."""
        with self._lock:
            self._evicting.discard(key)

    def usage(self, live: list[Sandbox]) -> Usage:
        with self._lock:
            return usage(self._current(live))

    def _current(self, listed: list[Sandbox]) -> list[Sandbox]:
        seen = {s.key for s in listed}
        return [s for s in listed if s.key not in self._evicting] + [
            s for key, s in self._starting.items() if key not in seen]
