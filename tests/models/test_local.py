"""The local model: llama.cpp's real server running the real Gemma 3 270M, supervised by dockyard.

Everything here runs the actual server binary from the local-model extra (`make test` installs it); with
the extra missing the module skips and says how to install it.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from support.process import DockyardProcess

from dockyard.home import Home
from dockyard.models.local import INSTALL_HINT, LocalModel, LocalModelUnavailable, State, missing_packages

pytestmark = [
    pytest.mark.local_model,
    pytest.mark.skipif(bool(missing_packages()), reason=f"the local-model extra is not installed. {INSTALL_HINT}"),
]

READY_TIMEOUT = 120.0


@pytest.fixture(scope="module")
def model_home(tmp_path_factory: pytest.TempPathFactory) -> Home:
    """One home for the module, so the 250 MB model file is assembled once."""
    return Home(tmp_path_factory.mktemp("local-model-home")).ensure()


@pytest.fixture(scope="module")
def model(model_home: Home) -> Iterator[LocalModel]:
    local = LocalModel(model_home)
    local.start()
    local.wait_ready_sync(READY_TIMEOUT)
    yield local
    local.stop()


def chat(model: LocalModel, base_url: str, prompt: str, max_tokens: int = 32) -> dict:
    answer = httpx.post(f"{base_url}/chat/completions", timeout=120, headers=auth(model), json={
        "model": model.model_name,
        "messages": [{"role": "user", "content": prompt}],
        "max_tokens": max_tokens,
    })
    assert answer.status_code == 200, answer.text
    return answer.json()


def auth(model: LocalModel) -> dict[str, str]:
    return {"Authorization": f"Bearer {model.api_key}"}


def process_state(pid: int) -> str | None:
    """The /proc state letter of a process (R, S, Z, ...), or None when it no longer exists."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return stat.rpartition(")")[2].split()[0]


def gone(pid: int, timeout: float = 15.0) -> bool:
    """True once the process has exited (a zombie waiting for init to reap it counts as exited)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process_state(pid) in (None, "Z", "X"):
            return True
        time.sleep(0.1)
    return False


def llama_servers(parent: int | None = None) -> list[int]:
    """Pids of running llama-server processes, optionally only the children of `parent`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        comm = stat[stat.index("(") + 1:stat.rindex(")")]
        state, ppid = stat.rpartition(")")[2].split()[:2]
        if comm == "llama-server" and state not in ("Z", "X") and (parent is None or int(ppid) == parent):
            found.append(int(entry.name))
    return found


def test_answers_a_chat_completion_with_generated_text(model: LocalModel) -> None:
    assert model.state is State.READY
    assert model.base_url is not None and model.base_url.startswith("http://127.0.0.1:")
    assert model.base_url.endswith("/v1")
    answer = chat(model, model.base_url, "Name one colour of the rainbow.")
    text = answer["choices"][0]["message"]["content"]
    assert isinstance(text, str) and text.strip()
    assert answer["usage"]["completion_tokens"] > 0


def test_answers_only_with_dockyard_s_key(model: LocalModel) -> None:
    assert model.base_url is not None
    request = {"model": model.model_name, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1}
    assert httpx.post(f"{model.base_url}/chat/completions", json=request, timeout=30).status_code == 401
    wrong = {"Authorization": "Bearer not-the-key"}
    assert httpx.post(f"{model.base_url}/chat/completions", json=request, headers=wrong, timeout=30).status_code == 401
    assert httpx.get(f"{model.base_url}/models", timeout=10).status_code == 401
    root = model.base_url.removesuffix("/v1")
    assert httpx.get(f"{root}/health", timeout=10).status_code == 200  # public: no secrets there
    assert model.api_key not in (model.log_path.read_text(errors="replace"))
    assert model.api_key not in Path(f"/proc/{model.pid}/cmdline").read_text()


def test_a_request_without_max_tokens_is_bounded(model: LocalModel) -> None:
    assert model.base_url is not None
    answer = httpx.post(f"{model.base_url}/chat/completions", headers=auth(model), timeout=120, json={
        "model": model.model_name, "messages": [{"role": "user", "content": "Tell me about the sea."}],
    }).json()
    assert 0 < answer["usage"]["completion_tokens"] <= model.options.default_max_tokens


def test_reports_the_model_name_callers_send(model: LocalModel) -> None:
    assert model.base_url is not None
    listed = httpx.get(f"{model.base_url}/models", headers=auth(model), timeout=10).json()
    assert model.model_name in [entry["id"] for entry in listed["data"]]
    assert model.model_name == "gemma-3-270m-q4_k_m"


def test_keeps_its_model_file_and_log_in_the_home(model: LocalModel, model_home: Home) -> None:
    assert model.model_path == model_home.root / "models" / "gemma-3-270m-q4_k_m.gguf"
    assert model.model_path.stat().st_size > 200_000_000
    log = (model_home.root / "logs" / "local-model.log").read_text(errors="replace")
    assert "--jinja" in log and "--offline" in log  # the command dockyard ran
    assert "model loaded" in log  # llama.cpp's own output lands here


def test_wait_ready_answers_at_once_when_ready(model: LocalModel) -> None:
    assert asyncio.run(model.wait_ready(0.01)) == model.base_url
    assert model.wait_ready_sync(0.01) == model.base_url


def test_a_request_that_arrives_while_it_loads_waits_for_it(model_home: Home) -> None:
    # A second model on the same home: the file is already there, so this measures loading only.
    local = LocalModel(model_home)
    local.start()
    try:
        assert local.base_url is None  # start() does not block
        with pytest.raises(LocalModelUnavailable) as early:
            asyncio.run(local.wait_ready(0.01))
        assert early.value.code == "LocalModelNotReady" and early.value.status_code == 503
        assert str(local.log_path) in early.value.message
        base_url = asyncio.run(local.wait_ready(READY_TIMEOUT))
        assert base_url == local.base_url
        assert local.ready_seconds is not None and local.ready_seconds > 0
        assert chat(local, base_url, "Say hi.", max_tokens=8)["choices"][0]["message"]["content"]
    finally:
        local.stop()
    assert local.state is State.STOPPED and local.base_url is None
    with pytest.raises(LocalModelUnavailable) as stopped:
        local.wait_ready_sync(0.1)
    assert stopped.value.code == "LocalModelStopped"


def test_restarts_after_its_process_is_killed(model: LocalModel) -> None:
    old = model.pid
    assert old is not None
    os.kill(old, signal.SIGKILL)
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if model.pid not in (None, old) and model.state is State.READY:
            break
        time.sleep(0.1)
    assert model.pid not in (None, old), f"not restarted: state {model.state}, last error {model.last_error}"
    assert gone(old)
    base_url = model.wait_ready_sync(READY_TIMEOUT)
    assert chat(model, base_url, "Name a fruit.")["choices"][0]["message"]["content"].strip()


def wait_for_ready_line(server: DockyardProcess, timeout: float = READY_TIMEOUT) -> dict:
    """dockyard's own log line that says the local model is ready (it logs JSON lines)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in server.logs().splitlines():
            if '"local model ready' in line:
                return json.loads(line)
        assert server.process is not None and server.process.poll() is None, server.logs()
        time.sleep(0.1)
    raise AssertionError(f"the local model was not ready within {timeout}s:\n{server.logs()}")


@pytest.fixture(scope="module")
def dockyard_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("dockyard-home")


def test_stops_with_dockyard(dockyard_home: Path) -> None:
    server = DockyardProcess(home=dockyard_home, extra_args=("--no-engine",), local_model=True).start()
    try:
        ready = wait_for_ready_line(server)
        assert server.process is not None
        children = llama_servers(parent=server.process.pid)
        assert children == [ready["pid"]]
        assert httpx.get(ready["base_url"].removesuffix("/v1") + "/health", timeout=10).status_code == 200
        # dockyard's own output does not carry llama.cpp's.
        assert "llama_model_loader" not in server.logs() and "srv " not in server.logs()
    finally:
        assert server.stop() == 0
    assert gone(children[0])


def test_a_kill_9_of_dockyard_leaves_no_llama_server_behind(dockyard_home: Path) -> None:
    server = DockyardProcess(home=dockyard_home, extra_args=("--no-engine",), local_model=True).start()
    ready = wait_for_ready_line(server)
    assert server.process is not None
    assert llama_servers(parent=server.process.pid) == [ready["pid"]]
    server.kill()  # SIGKILL: no shutdown code runs in dockyard
    assert gone(ready["pid"]), f"llama-server {ready['pid']} outlived dockyard"


def test_no_local_model_starts_none(tmp_path: Path) -> None:
    server = DockyardProcess(home=tmp_path / "home", extra_args=("--no-engine",)).start()
    try:
        assert server.process is not None
        time.sleep(1.0)
        assert llama_servers(parent=server.process.pid) == []
    finally:
        server.stop()
