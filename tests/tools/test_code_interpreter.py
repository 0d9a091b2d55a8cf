"""The code_interpreter tool driven through its PlatformTool interface, on both sandboxes.

`process`: dockyard's own launcher on this machine (namespaces, cgroup, nobody); `container`: a one-off
locked-down container of the CI base image on the real engine (podman). Each hostile case is followed by
a plain run in the same container, which must still work: the tool (and dockyard with it) is unaffected.
"""

from __future__ import annotations

import asyncio
import base64
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.engine import require_engine
from support.images import BASE_IMAGE

from dockyard.domain.errors import BadRequest, NotFound
from dockyard.home import Home
from dockyard.identity.ownership import Caller
from dockyard.runtime.engine import connect
from dockyard.settings import Settings
from dockyard.store.database import migrate, open_engine, sqlite_url
from dockyard.store.files import FileStore
from dockyard.tools.base import ToolContext, ToolOutcome
from dockyard.tools.code_interpreter import CodeInterpreterKind, CodeInterpreterTool
from dockyard.tools.dependencies import ToolDependencies

ALICE = Caller(subject="user:alice", user=None, operator=False, oid="alice")
BOB = Caller(subject="user:bob", user=None, operator=False, oid="bob")
PRIMES = """
limit = 10**5
sieve = bytearray([1]) * limit
sieve[0] = sieve[1] = 0
for i in range(2, int(limit ** 0.5) + 1):
    if sieve[i]:
        sieve[i * i::i] = bytearray(len(sieve[i * i::i]))
total = sum(i for i in range(limit) if sieve[i])
print(total)
with open("/mnt/data/primes.csv", "w") as out:
    out.write("limit,sum\\n%d,%d\\n" % (limit, total))
"""


@pytest.fixture(scope="module", params=["process", pytest.param("container", marks=pytest.mark.engine)])
def kind(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[CodeInterpreterKind]:
    engine = None
    if request.param == "container":
        engine = connect(require_engine())
        assert engine is not None
    home = Home(tmp_path_factory.mktemp("home")).ensure()
    database = open_engine(sqlite_url(home.database))
    migrate(database)
    # A container's Python starts slower than the engine says it started: give it more of its own time.
    timeout = 4 if engine is None else 8
    settings = Settings(home=home.root, code_image=BASE_IMAGE, code_interpreter_timeout_seconds=timeout,
                        code_interpreter_memory_bytes=256 * 1024 * 1024, code_interpreter_output_bytes=4096)
    made = CodeInterpreterKind(ToolDependencies(settings=settings, home=home, database=database, engine=engine,
                                                catalog=None))
    assert made.sandbox.kind == request.param
    made.files = FileStore(database, home.root / "files")
    yield made
    database.dispose()


class Calls:
    """One bound tool and its log, as the loop would hold them for one Responses call."""

    def __init__(self, kind: CodeInterpreterKind, config: dict[str, Any] | None = None,
                 caller: Caller = ALICE) -> None:
        self.lines: list[str] = []
        self.ctx = ToolContext(project="default", caller=caller, request_id="req-1", log=self.lines.append)
        self.tool = kind.bind(config or {"type": "code_interpreter", "container": {"type": "auto"}}, "default", caller)
        asyncio.run(self.tool.prepare(self.ctx))

    def run(self, code: str) -> ToolOutcome:
        return asyncio.run(self.tool.run(self.ctx, "code_interpreter", {"code": code}, "call_1"))


@pytest.fixture(scope="module")
def calls(kind: CodeInterpreterKind) -> Calls:
    return Calls(kind)


def assert_still_works(calls: Calls) -> None:
    outcome = calls.run("print(6 * 7)")
    assert outcome.item["status"] == "completed", outcome.item
    assert outcome.item["outputs"] == [{"type": "logs", "logs": "42\n"}]


def test_offers_one_function_named_after_the_tool(calls: Calls) -> None:
    (spec,) = calls.tool.functions()
    assert spec.name == "code_interpreter"
    assert spec.parameters["required"] == ["code"]
    assert "/mnt/data" in spec.description


def test_computes_a_real_value_and_returns_the_file_it_wrote(kind: CodeInterpreterKind, calls: Calls) -> None:
    outcome = calls.run(PRIMES)
    item = outcome.item
    assert item["type"] == "code_interpreter_call" and item["id"].startswith("ci_")
    assert item["status"] == "completed"
    assert item["outputs"] == [{"type": "logs", "logs": "454396537\n"}]
    assert item["container_id"] == calls.tool.container.id  # type: ignore[union-attr]
    assert outcome.model_output is not None and "454396537" in outcome.model_output
    assert "/mnt/data/primes.csv" in outcome.model_output
    (citation,) = outcome.annotations
    assert citation["type"] == "container_file_citation" and citation["filename"] == "primes.csv"
    container = kind.containers.get("default", ALICE, item["container_id"])
    entry = kind.containers.file(container, citation["file_id"])
    size, chunks = kind.containers.open_file(container, entry)
    assert b"".join(chunks) == b"limit,sum\n100000,454396537\n" and size == 27
    assert entry.to_wire(container.id)["path"] == "/mnt/data/primes.csv"
    # Files persist between calls of a container; variables do not (a fresh interpreter each time).
    later = calls.run("print(open('primes.csv').read().split()[1]); print('total' in globals())")
    assert later.item["outputs"][0]["logs"] == "100000,454396537\nFalse\n"
    assert later.annotations == []  # nothing new written
    assert any("exit 0" in line and "characters of code" in line for line in calls.lines)
    assert not any("454396537" in line for line in calls.lines)  # the log says what ran, not what it printed


def test_a_last_bare_expression_is_shown_as_in_a_notebook(calls: Calls) -> None:
    outcome = calls.run("x = 17\nx * 23")
    assert outcome.item["outputs"] == [{"type": "logs", "logs": "391\n"}]
    assert calls.run("None").item["outputs"] == []
    broken = calls.run("def f(:\n    pass")
    assert broken.item["status"] == "failed" and "SyntaxError" in broken.item["outputs"][0]["logs"]


def test_a_png_written_is_an_image_output_too(calls: Calls) -> None:
    png = (b"\x89PNG\r\n\x1a\n" + bytes(range(16))).hex()
    outcome = calls.run(f"with open('plot.png', 'wb') as out:\n    out.write(bytes.fromhex('{png}'))")
    (image,) = outcome.item["outputs"]
    assert image["type"] == "image"
    assert base64.b64decode(image["url"].removeprefix("data:image/png;base64,")) == bytes.fromhex(png)
    assert [a["filename"] for a in outcome.annotations] == ["plot.png"]


def test_an_exception_is_a_failed_call_with_its_traceback(calls: Calls) -> None:
    outcome = calls.run("1 / 0")
    assert outcome.item["status"] == "failed"
    assert "ZeroDivisionError" in outcome.item["outputs"][0]["logs"]
    assert outcome.model_output is not None and "Error: the code raised an error" in outcome.model_output


def test_code_that_loops_forever_is_stopped_at_the_time_limit(calls: Calls) -> None:
    assert isinstance(calls.tool, CodeInterpreterTool)
    outcome = calls.run("while True:\n    pass")
    assert outcome.item["status"] == "incomplete"
    assert f"longer than the {calls.tool.kind.limits.timeout_seconds:g} s limit" in outcome.item["error"]["message"]
    assert_still_works(calls)


def test_code_that_eats_memory_is_stopped_with_a_clear_error(calls: Calls) -> None:
    outcome = calls.run("hog = []\nwhile True:\n    hog.append(bytearray(16 * 1024 * 1024))")
    assert outcome.item["status"] == "failed", outcome.item
    assert "ran out of memory (limit 256 MiB)" in outcome.item["error"]["message"]
    assert_still_works(calls)


def test_a_fork_bomb_is_contained(calls: Calls) -> None:
    outcome = calls.run("import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass")
    assert outcome.item["status"] in ("incomplete", "failed")
    assert_still_works(calls)
    left = subprocess.run(["pgrep", "-u", "65534", "-f", "os.fork"], capture_output=True, text=True).stdout
    assert left == "", f"fork bomb processes outlived their run: {left}"


def test_a_flood_of_output_is_cut_at_the_limit(calls: Calls) -> None:
    outcome = calls.run("import sys\nfor _ in range(20000):\n    sys.stdout.write('x' * 100 + '\\n')")
    logs = outcome.item["outputs"][0]["logs"]
    assert logs.endswith("[output truncated at 4096 bytes]")
    assert len(logs) < 4096 + 100
    assert outcome.model_output is not None and len(outcome.model_output) < 4500


def test_dockyard_home_and_secrets_are_out_of_reach(kind: CodeInterpreterKind, calls: Calls) -> None:
    home = kind.containers.root.parent
    secret = (home / "identity-secret").read_text().strip() if (home / "identity-secret").exists() else None
    probe = f"""
import os
for path in {[str(home), str(home / "dockyard.db"), str(home / "tls"), "/proc/1/environ"]!r}:
    try:
        print(path, "listed" if os.path.isdir(path) and os.listdir(path) else len(open(path, "rb").read()))
    except OSError as exc:
        print(path, "refused", type(exc).__name__)
print("env", sorted(os.environ))
"""
    outcome = calls.run(probe)
    logs = outcome.item["outputs"][0]["logs"]
    assert f"{home} listed" not in logs
    for line in logs.splitlines()[1:3]:
        assert "refused" in line, logs
    assert "DOCKER_HOST" not in logs and "AZURE" not in logs
    if secret:
        assert secret not in logs
    # A link the code plants to a file of dockyard's is never registered, never read.
    planted = calls.run(f"import os\nos.symlink({str(home / 'dockyard.db')!r}, 'db')\n"
                        f"os.symlink({str(home)!r}, 'homedir')\nprint('planted')")
    assert planted.annotations == []
    container = kind.containers.get("default", ALICE, planted.item["container_id"])
    assert all(f.path not in ("db", "homedir/dockyard.db") for f in container.files.values())
    assert_still_works(calls)


def test_files_from_the_files_api_are_copied_in(kind: CodeInterpreterKind, tmp_path: Path) -> None:
    assert kind.files is not None
    source = tmp_path / "numbers.txt"
    source.write_text("3\n4\n5\n")
    stored = kind.files.save_path("default", ALICE.owner, "numbers.txt", "assistants", source)
    calls = Calls(kind, {"type": "code_interpreter", "container": {"type": "auto", "file_ids": [stored.id]}})
    outcome = calls.run("print(sum(int(x) for x in open('/mnt/data/numbers.txt')))")
    assert outcome.item["outputs"] == [{"type": "logs", "logs": "12\n"}]
    # Someone else's file id fails the call before anything runs, as a file that does not exist.
    with pytest.raises(NotFound):
        Calls(kind, {"type": "code_interpreter", "container": {"type": "auto", "file_ids": [stored.id]}}, caller=BOB)


def test_a_container_is_named_again_by_its_owner_only(kind: CodeInterpreterKind, calls: Calls) -> None:
    calls.run("open('kept.txt', 'w').write('kept')")
    container_id = calls.tool.container.id  # type: ignore[union-attr]
    again = Calls(kind, {"type": "code_interpreter", "container": container_id})
    assert again.run("print(open('/mnt/data/kept.txt').read())").item["outputs"][0]["logs"] == "kept\n"
    with pytest.raises(NotFound) as raised:
        Calls(kind, {"type": "code_interpreter", "container": container_id}, caller=BOB)
    assert raised.value.code == "ContainerNotFound"


@pytest.mark.parametrize("container", [{"type": "static"}, "c-1", {"type": "auto", "file_ids": "file-1"},
                                       {"type": "auto", "memory_limit": "3g"}])
def test_a_bad_container_is_refused(kind: CodeInterpreterKind, container: Any) -> None:
    with pytest.raises(BadRequest) as raised:
        kind.bind({"type": "code_interpreter", "container": container}, "default", ALICE)
    assert raised.value.code == "InvalidContainer"


def test_calls_without_code_are_answered_not_run(calls: Calls) -> None:
    assert isinstance(calls.tool, CodeInterpreterTool)
    outcome = asyncio.run(calls.tool.run(calls.ctx, "code_interpreter", {}, "call_2"))
    assert outcome.item["status"] == "failed" and "needs a non-empty 'code'" in (outcome.model_output or "")
    assert os.getpid() > 0
