from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

from dockyard.store.database import migrate, open_engine, sqlite_url

sys.path.insert(0, str(Path(__file__).parent))

from support.fake_vendor import FakeVendor
from support.llama import LLAMA_KEY, LlamaServer, require_llama
from support.process import DockyardProcess


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    """A migrated SQLite store of its own, as a home has (modules that mean a container engine override it)."""
    engine = open_engine(sqlite_url(tmp_path / "dockyard.db"))
    migrate(engine)
    yield engine
    engine.dispose()


@pytest.fixture(scope="module")
def llama() -> Iterator[LlamaServer]:
    """llama.cpp's server with the small Gemma model, one per test module (skips without the extra)."""
    require_llama()
    with LlamaServer() as server:
        yield server


@pytest.fixture(scope="module")
def keyed_llama() -> Iterator[LlamaServer]:
    """The same, refusing every call without `Bearer {LLAMA_KEY}`."""
    require_llama()
    with LlamaServer(api_key=LLAMA_KEY) as server:
        yield server


@pytest.fixture(scope="module")
def vendor() -> Iterator[FakeVendor]:
    """The fake cloud model vendor (its quirks: rate limits, cut streams, slow answers)."""
    with FakeVendor() as fake:
        yield fake


@pytest.fixture(scope="module")
def dockyard(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DockyardProcess]:
    """One real `dockyard up` for a test module, with its own home."""
    server = DockyardProcess(home=tmp_path_factory.mktemp("home"), extra_args=("--no-engine",)).start()
    yield server
    if server.process and server.process.poll() is None:
        server.stop()


@pytest.fixture
def sdk_env(dockyard: DockyardProcess, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """This process's environment as after `eval "$(dockyard env)"`, so SDK code runs unchanged."""
    env = dockyard.env()
    for name in ("AZURE_CLIENT_ID", "AZURE_TENANT_ID", "AZURE_CLIENT_SECRET", "AZURE_FEDERATED_TOKEN_FILE"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    """With DOCKYARD_REQUIRE_ENGINE=1 (CI), a test that needs a container engine may not skip."""
    outcome = yield
    report = outcome.get_result()
    if report.skipped and item.get_closest_marker("engine") and os.environ.get("DOCKYARD_REQUIRE_ENGINE") == "1":
        report.outcome = "failed"
        report.longrepr = f"needs a container engine, and DOCKYARD_REQUIRE_ENGINE=1 forbids skipping: {report.longrepr}"
