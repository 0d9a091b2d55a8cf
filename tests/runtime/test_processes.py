"""The process runtime, driven directly with a real tiny agent: a stdlib HTTP server run as a process."""

from __future__ import annotations

import io
import json
import os
import shutil
import threading
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import httpx
import pytest

from dockyard.domain.errors import CONTAINER_RUNTIME_UNAVAILABLE
from dockyard.domain.session_files import (
    InvalidSessionFilePath,
    SessionDirectoryNotEmpty,
    SessionFileNotFound,
    parse_session_path,
)
from dockyard.home import Home
from dockyard.runtime import process_supervisor
from dockyard.runtime.base import CodeWorkload, Observed, RuntimeFailure, Workload, WorkloadKey
from dockyard.runtime.processes import ProcessRuntime, orphaned_supervisors, stop_home, stop_supervisor
from dockyard.runtime.python_runtimes import HostPythons

AGENT = '''
import json, os, sys, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

print("agent starting", flush=True)
if os.environ.get("AGENT_EXIT"):
    print("agent exiting on purpose", flush=True)
    sys.exit(int(os.environ["AGENT_EXIT"]))
hold = []
if os.environ.get("AGENT_ALLOCATE_MB"):
    for _ in range(int(os.environ["AGENT_ALLOCATE_MB"])):
        hold.append(bytearray(1024 * 1024))
        time.sleep(0.002)

class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/readiness":
            return self.answer({"status": "ready"})
        if self.path == "/env":
            names = ("PORT", "HOME", "TMPDIR", "AGENTSERVER_STATE_ROOT", "FOUNDRY_AGENT_NAME", "SSL_CERT_FILE",
                     "PYTHONPATH", "DOCKYARD_TEST_SECRET")
            return self.answer({"env": {n: os.environ.get(n) for n in names}, "cwd": os.getcwd(), "pid": os.getpid()})
        self.send_error(404)

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["content-length"])))
        print("got", body.get("input"), flush=True)
        if self.path == "/write":
            with open(os.path.join(os.environ["HOME"], "note.txt"), "w") as out:
                out.write(body["input"])
        self.answer({"output_text": "echo: " + str(body.get("input"))})

    def answer(self, value):
        data = json.dumps(value).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass

ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()
'''


@pytest.fixture
def code(tmp_path: Path) -> CodeWorkload:
    tree = tmp_path / "code"
    tree.mkdir()
    (tree / "main.py").write_text(AGENT)
    (tree / "main.py").chmod(0o444)
    tree.chmod(0o555)
    return CodeWorkload(content_hash="0" * 64, tree=tree, runtime="python_3_11", entry_point=("python", "main.py"))


@pytest.fixture
def home(tmp_path: Path) -> Home:
    return Home(tmp_path / "home").ensure()


@pytest.fixture
def runtime(home: Home, tmp_path: Path) -> Iterator[ProcessRuntime]:
    runtime = make_runtime(home, tmp_path)
    yield runtime
    for observed in runtime.list():
        runtime.discard(observed.key)


def make_runtime(home: Home, tmp_path: Path, **options: object) -> ProcessRuntime:
    return ProcessRuntime(home, HostPythons(tmp_path / "python-cache"), instance_id=home.instance_id(),
                          ca_bundle=None, grace_seconds=2.0, **options)  # type: ignore[arg-type]


def workload(code: CodeWorkload | None, session: str = "", memory: int = 1 << 30, **environment: str) -> Workload:
    return Workload(key=WorkloadKey("v1uid", session), project="default", agent_name="echo", version="1",
                    image="docker.io/library/python:3.11-slim", cpu=Decimal("0.5"), memory_bytes=memory,
                    environment={"FOUNDRY_AGENT_NAME": "echo", "PORT": "8088", **environment}, code=code)


def wait_ready(observed: Observed, timeout: float = 20.0) -> None:
    assert observed.endpoint is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{observed.endpoint}/readiness", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.05)
    raise AssertionError(f"{observed.endpoint} never became ready")


def wait_exit(runtime: ProcessRuntime, key: WorkloadKey, timeout: float = 20.0) -> Observed:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        observed = runtime.observe(key)
        if observed is not None and not observed.running and observed.finished_at is not None:
            return observed
        time.sleep(0.05)
    raise AssertionError(f"{key} did not exit: {runtime.logs(key)}")


def agent_pid(observed: Observed) -> int:
    assert observed.endpoint is not None
    return int(httpx.get(f"{observed.endpoint}/env").json()["pid"])


def test_runs_the_code_with_its_own_port_home_and_environment(runtime: ProcessRuntime, code: CodeWorkload) -> None:
    observed = runtime.ensure_running(workload(code, DOCKYARD_TEST_SECRET="s3cret"))
    assert observed.running and observed.endpoint is not None and observed.endpoint.startswith("http://127.0.0.1:")
    wait_ready(observed)
    seen = httpx.get(f"{observed.endpoint}/env").json()
    env = seen["env"]
    assert env["PORT"] == observed.endpoint.rsplit(":", 1)[1] != "8088"
    assert seen["cwd"] == str(code.tree)
    assert env["FOUNDRY_AGENT_NAME"] == "echo" and env["DOCKYARD_TEST_SECRET"] == "s3cret"
    assert env["TMPDIR"] == env["HOME"] and env["HOME"].startswith(str(runtime.root))
    assert env["AGENTSERVER_STATE_ROOT"] == f"{env['HOME']}/agentserver"
    answer = httpx.post(f"{observed.endpoint}/responses", json={"input": "hi"}).json()
    assert answer == {"output_text": "echo: hi"}
    time.sleep(0.3)
    assert "agent starting" in runtime.logs(observed.key) and "got hi" in runtime.logs(observed.key)
    # The secret passed in the environment is never written to the workload's folder.
    folder = runtime.root / "v1uid"
    assert not any("s3cret" in p.read_text(errors="replace") for p in folder.rglob("*") if p.is_file())
    assert [o.key for o in runtime.list()] == [observed.key]


def test_ensure_running_twice_is_one_process(runtime: ProcessRuntime, code: CodeWorkload) -> None:
    first = runtime.ensure_running(workload(code))
    wait_ready(first)
    second = runtime.ensure_running(workload(code))
    assert second.container_id == first.container_id and second.endpoint == first.endpoint


def test_concurrent_starts_make_one_process(runtime: ProcessRuntime, code: CodeWorkload) -> None:
    results: list[Observed] = []
    threads = [threading.Thread(target=lambda: results.append(runtime.ensure_running(workload(code))))
               for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len({o.container_id for o in results}) == 1


def test_stop_ends_the_process_and_its_folder(runtime: ProcessRuntime, code: CodeWorkload) -> None:
    observed = runtime.ensure_running(workload(code))
    wait_ready(observed)
    pid = agent_pid(observed)
    runtime.stop(observed.key)
    assert runtime.observe(observed.key) is None and runtime.list() == []
    assert process_supervisor.start_time(pid) is None
    assert runtime.logs(observed.key) == []
    runtime.stop(observed.key)  # a no-op now


def test_image_based_workload_is_refused_with_a_clear_code(runtime: ProcessRuntime) -> None:
    with pytest.raises(RuntimeFailure) as failure:
        runtime.ensure_running(workload(None))
    assert failure.value.code == CONTAINER_RUNTIME_UNAVAILABLE
    assert "podman" in failure.value.message and "image-based" in failure.value.message


def test_exit_code_is_observed_even_by_a_later_runtime(home: Home, tmp_path: Path, runtime: ProcessRuntime,
                                                       code: CodeWorkload) -> None:
    observed = runtime.ensure_running(workload(code, AGENT_EXIT="3"))
    ended = wait_exit(runtime, observed.key)
    assert ended.exit_code == 3 and not ended.oom_killed and ended.endpoint is None
    assert "agent exiting on purpose" in runtime.logs(observed.key)
    later = make_runtime(home, tmp_path).observe(observed.key)  # a dockyard started afterwards
    assert later is not None and later.exit_code == 3 and later.finished_at == ended.finished_at
    # Started again (the reconciler's restart): a new process, the log kept.
    again = runtime.ensure_running(workload(code))
    assert again.running
    wait_ready(again)
    assert runtime.logs(observed.key).count("agent starting") == 2


def test_a_command_that_does_not_exist_is_exit_127(runtime: ProcessRuntime, code: CodeWorkload) -> None:
    missing = CodeWorkload(content_hash=code.content_hash, tree=code.tree, runtime=code.runtime,
                           entry_point=("no-such-program-here",))
    observed = runtime.ensure_running(workload(missing))
    ended = wait_exit(runtime, observed.key)
    assert ended.exit_code == 127
    assert any("no-such-program-here" in line for line in runtime.logs(observed.key))


@pytest.mark.parametrize("cgroups", [True, False], ids=["cgroup-or-watchdog", "watchdog"])
def test_memory_past_the_limit_is_an_oom_kill(home: Home, tmp_path: Path, code: CodeWorkload, cgroups: bool) -> None:
    runtime = make_runtime(home, tmp_path, cgroups=cgroups)
    try:
        observed = runtime.ensure_running(workload(code, memory=64 << 20, AGENT_ALLOCATE_MB="400"))
        ended = wait_exit(runtime, observed.key, timeout=30)
        assert ended.oom_killed and ended.exit_code == 137
        state = json.loads((runtime.root / "v1uid" / "state.json").read_text())
        if not cgroups:
            assert state["limits"] == "watchdog"
    finally:
        runtime.discard(WorkloadKey("v1uid"))


def test_cgroup_limits_where_this_machine_allows_them(runtime: ProcessRuntime, code: CodeWorkload) -> None:
    if process_supervisor.cgroup_mode() == "none" or os.geteuid() != 0:
        pytest.skip("no writable cgroup hierarchy here: the watchdog test covers this machine")
    observed = runtime.ensure_running(workload(code, memory=256 << 20))
    wait_ready(observed)
    state = json.loads((runtime.root / "v1uid" / "state.json").read_text())
    assert state["limits"].startswith("cgroup")
    groups = [Path(p) for p in state["cgroups"]]
    memory = next(g for g in groups if (g / "memory.limit_in_bytes").exists() or (g / "memory.max").exists())
    limit = memory / ("memory.limit_in_bytes" if (memory / "memory.limit_in_bytes").exists() else "memory.max")
    assert int(limit.read_text()) == 256 << 20
    assert str(agent_pid(observed)) in (memory / "cgroup.procs").read_text().split()
    quota = [g / "cpu.cfs_quota_us" for g in groups if (g / "cpu.cfs_quota_us").exists()]
    quota += [g / "cpu.max" for g in groups if (g / "cpu.max").exists()]
    assert quota and quota[0].read_text().split()[0] == "50000"  # cpu 0.5 of a 100 ms period
    runtime.stop(observed.key)
    assert not any(g.exists() for g in groups)


def test_a_second_runtime_adopts_the_running_process(home: Home, tmp_path: Path, code: CodeWorkload) -> None:
    first = make_runtime(home, tmp_path)
    observed = first.ensure_running(workload(code))
    wait_ready(observed)
    pid = agent_pid(observed)
    del first  # dockyard gone; the supervisor runs in a session of its own
    second = make_runtime(home, tmp_path)
    try:
        listed = second.list()
        assert [o.container_id for o in listed] == [observed.container_id] and listed[0].running
        adopted = second.ensure_running(workload(code))
        assert adopted.container_id == observed.container_id and agent_pid(adopted) == pid
        # A runtime of another instance (another home's dockyard) sees none of it.
        assert ProcessRuntime(home, HostPythons(tmp_path / "c"), instance_id="other").list() == []
    finally:
        second.stop(observed.key)
    assert process_supervisor.start_time(pid) is None


def test_a_killed_supervisor_takes_its_agent_along(runtime: ProcessRuntime, code: CodeWorkload) -> None:
    observed = runtime.ensure_running(workload(code))
    wait_ready(observed)
    pid = agent_pid(observed)
    state = json.loads((runtime.root / "v1uid" / "state.json").read_text())
    os.kill(state["supervisor_pid"], 9)
    deadline = time.monotonic() + 10
    while process_supervisor.start_time(pid) is not None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert process_supervisor.start_time(pid) is None
    after = runtime.observe(observed.key)
    assert after is not None and not after.running and after.finished_at is not None


def test_a_reused_pid_is_not_taken_for_the_agent(runtime: ProcessRuntime, code: CodeWorkload) -> None:
    observed = runtime.ensure_running(workload(code))
    wait_ready(observed)
    path = runtime.root / "v1uid" / "state.json"
    state = json.loads(path.read_text())
    state["child_start"] += 1  # as if the pid now belonged to a process started at another time
    path.write_text(json.dumps(state))
    after = runtime.observe(observed.key)
    assert after is not None and not after.running


def test_follow_logs_streams_new_lines_until_closed(runtime: ProcessRuntime, code: CodeWorkload) -> None:
    observed = runtime.ensure_running(workload(code))
    wait_ready(observed)
    stream = runtime.follow_logs(observed.key, tail=10)
    assert stream is not None
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(stream))
    reader.start()
    httpx.post(f"{observed.endpoint}/responses", json={"input": "followed"})
    deadline = time.monotonic() + 5
    while "got followed" not in lines and time.monotonic() < deadline:
        time.sleep(0.05)
    stream.close()
    reader.join(timeout=5)
    assert not reader.is_alive()
    assert lines[0] == "agent starting" and "got followed" in lines
    assert runtime.follow_logs(WorkloadKey("nothing-here")) is None


def test_session_home_holds_files_and_outlives_its_process(runtime: ProcessRuntime, code: CodeWorkload) -> None:
    session = workload(code, session="s1")
    observed = runtime.ensure_running(session)
    wait_ready(observed)
    env = httpx.get(f"{observed.endpoint}/env").json()["env"]
    session_home = runtime.sessions / "s1"
    assert env["HOME"] == str(session_home) and env["AGENTSERVER_STATE_ROOT"] == f"{session_home}/agentserver"
    httpx.post(f"{observed.endpoint}/write", json={"input": "written by the agent"})
    runtime.write_session_file(session, parse_session_path("data/in.txt", allow_root=False), io.BytesIO(b"hello"), 5)
    runtime.stop(observed.key)  # released: the home stays
    assert runtime.observe(observed.key) is None
    root = parse_session_path("", allow_root=True)
    names = {e.name: e for e in runtime.list_session_files(session, root)}
    assert names["note.txt"].size == len("written by the agent") and names["data"].is_directory
    stream = runtime.read_session_file(session, parse_session_path("data/in.txt", allow_root=False))
    assert stream.size == 5 and b"".join(stream.chunks) == b"hello"
    # Resumed: the same home.
    resumed = runtime.ensure_running(session)
    wait_ready(resumed)
    assert httpx.get(f"{resumed.endpoint}/env").json()["env"]["HOME"] == str(session_home)
    with pytest.raises(SessionDirectoryNotEmpty):
        runtime.delete_session_file(session, parse_session_path("data", allow_root=False), recursive=False)
    runtime.delete_session_file(session, parse_session_path("data", allow_root=False), recursive=True)
    with pytest.raises(SessionFileNotFound):
        runtime.read_session_file(session, parse_session_path("data/in.txt", allow_root=False))
    runtime.discard(resumed.key)
    assert not session_home.exists()


def test_session_files_never_follow_links_out(runtime: ProcessRuntime, code: CodeWorkload, tmp_path: Path) -> None:
    session = workload(code, session="s2")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_text("not yours")
    runtime.write_session_file(session, parse_session_path("a.txt", allow_root=False), io.BytesIO(b"a"), 1)
    (runtime.sessions / "s2" / "out").symlink_to(outside)
    (runtime.sessions / "s2" / "link").symlink_to(outside / "secret")
    for path in ("out/secret", "link"):
        with pytest.raises(InvalidSessionFilePath):
            runtime.read_session_file(session, parse_session_path(path, allow_root=False))
    with pytest.raises(InvalidSessionFilePath):
        runtime.write_session_file(session, parse_session_path("out/new", allow_root=False), io.BytesIO(b"x"), 1)
    with pytest.raises(InvalidSessionFilePath):
        runtime.list_session_files(session, parse_session_path("out", allow_root=False))
    runtime.delete_session_file(session, parse_session_path("out", allow_root=False), recursive=True)
    assert (outside / "secret").read_text() == "not yours" and not (outside / "new").exists()


def test_down_stops_a_homes_processes_and_purge_their_session_homes(home: Home, tmp_path: Path,
                                                                     code: CodeWorkload) -> None:
    runtime = make_runtime(home, tmp_path)
    shared = runtime.ensure_running(workload(code))
    session = runtime.ensure_running(workload(code, session="s3"))
    wait_ready(shared)
    wait_ready(session)
    pids = [agent_pid(shared), agent_pid(session)]
    assert stop_home(home, purge=False) == ["process v1uid", "process v1uid.s3"]
    assert all(process_supervisor.start_time(pid) is None for pid in pids)
    assert runtime.list() == [] and (runtime.sessions / "s3").is_dir()
    assert stop_home(home, purge=True) == ["session-home s3"]
    assert not (runtime.sessions / "s3").exists()


def test_prune_finds_the_supervisors_of_a_home_that_is_gone(home: Home, tmp_path: Path, code: CodeWorkload) -> None:
    runtime = make_runtime(home, tmp_path)
    observed = runtime.ensure_running(workload(code))
    wait_ready(observed)
    pid = agent_pid(observed)
    state = json.loads((runtime.root / "v1uid" / "state.json").read_text())
    assert all(found[0] != state["supervisor_pid"] for found in orphaned_supervisors())  # its home is there
    shutil.rmtree(home.root)
    orphans = [found for found in orphaned_supervisors() if found[0] == state["supervisor_pid"]]
    assert len(orphans) == 1 and "no longer exists" in orphans[0][2]
    stop_supervisor(state["supervisor_pid"], grace_seconds=2)
    assert process_supervisor.start_time(pid) is None
    assert process_supervisor.start_time(state["supervisor_pid"]) is None
