"""Code-based versions through the real 2.x SDK: create_version_from_code and download_code against `dockyard up`.

The good path and every refusal go through `AIProjectClient`; only what the SDK cannot send (a body past
250 MB without holding it in memory, a missing header) is sent with httpx. After every refusal the
home's code folder holds exactly what it held before: no bundle, no partial upload.
"""

from __future__ import annotations

import hashlib
import io
import os
import ssl
import stat
import uuid
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from azure.ai.projects import AIProjectClient
from azure.ai.projects.models import (
    CodeConfiguration,
    ContainerConfiguration,
    HostedAgentDefinition,
    ProtocolVersionRecord,
)
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.identity import DefaultAzureCredential
from support.process import DockyardProcess

pytestmark = pytest.mark.e2e

MAIN = b"print('hello from a code-based agent')\n"


def code_definition(entry_point: list[str] | None = None, resolution: str = "bundled") -> HostedAgentDefinition:
    return HostedAgentDefinition(
        cpu="1",
        memory="2Gi",
        code_configuration=CodeConfiguration(runtime="python_3_12", entry_point=entry_point or ["python", "main.py"],
                                             dependency_resolution=resolution),
        protocol_versions=[ProtocolVersionRecord(protocol="responses", version="v1")],
    )


def make_zip(path: Path, files: dict[str, bytes], *, compression: int = zipfile.ZIP_DEFLATED) -> Path:
    with zipfile.ZipFile(path, "w", compression) as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return path


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def printed_env(dockyard: DockyardProcess) -> dict[str, str]:
    return dockyard.env()


@pytest.fixture
def sdk_env(printed_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """conftest's sdk_env, with `dockyard env` run once for the module rather than once per test."""
    for name in ("AZURE_CLIENT_ID", "AZURE_TENANT_ID", "AZURE_CLIENT_SECRET", "AZURE_FEDERATED_TOKEN_FILE"):
        monkeypatch.delenv(name, raising=False)
    for name, value in printed_env.items():
        monkeypatch.setenv(name, value)
    return printed_env


@pytest.fixture
def client(sdk_env: dict[str, str]) -> AIProjectClient:
    return AIProjectClient(endpoint=os.environ["AZURE_AI_PROJECT_ENDPOINT"], credential=DefaultAzureCredential())


@pytest.fixture
def code_dir(dockyard: DockyardProcess) -> Path:
    return dockyard.home / "code"


def snapshot(code_dir: Path) -> set[str]:
    """Everything under the code folder, partial uploads included (the folder they are received in is kept)."""
    if not code_dir.exists():
        return set()
    return {str(p.relative_to(code_dir)) for p in code_dir.rglob("*") if p != code_dir / ".incoming"}


def test_upload_and_download_round_trip(client: AIProjectClient, code_dir: Path, tmp_path: Path) -> None:
    name = unique("code")
    archive = make_zip(tmp_path / "agent.zip", {"main.py": MAIN, "lib/helper.py": b"X = 1\n",
                                                "packages/dep/__init__.py": b""})
    digest = sha256(archive)
    with archive.open("rb") as code:
        created = client.agents.create_version_from_code(
            name, definition=code_definition(), code=code, description="from code", metadata={"team": "dockyard"}
        )
    assert (created.name, created.version) == (name, "1")
    configuration = created.definition.code_configuration
    assert configuration.content_hash == digest
    assert (configuration.runtime, configuration.entry_point, configuration.dependency_resolution) == (
        "python_3_12", ["python", "main.py"], "bundled")
    assert created.definition.container_configuration is None
    assert created.description == "from code" and created.metadata == {"team": "dockyard"}
    assert created.status in ("creating", "active", "failed")  # the runtime's business, not this API's

    fetched = client.agents.get_version(agent_name=name, agent_version="1")
    assert fetched.definition.code_configuration.content_hash == digest

    downloaded = b"".join(client.agents.download_code(name))
    assert downloaded == archive.read_bytes()
    assert b"".join(client.agents.download_code(name, agent_version="1")) == downloaded

    # The stored tree is what was uploaded, read-only.
    tree = code_dir / digest
    assert (tree / "main.py").read_bytes() == MAIN
    assert (tree / "lib" / "helper.py").read_bytes() == b"X = 1\n"
    assert stat.S_IMODE((tree / "main.py").stat().st_mode) == 0o444
    assert stat.S_IMODE((tree / "lib").stat().st_mode) == 0o555
    assert (code_dir / f"{digest}.zip").read_bytes() == archive.read_bytes()


def test_download_headers(client: AIProjectClient, dockyard: DockyardProcess, tmp_path: Path) -> None:
    name = unique("headers")
    archive = make_zip(tmp_path / "agent.zip", {"main.py": MAIN})
    with archive.open("rb") as code:
        client.agents.create_version_from_code(name, definition=code_definition(), code=code)
    other = make_zip(tmp_path / "agent2.zip", {"main.py": MAIN + b"# two\n"})
    with other.open("rb") as code:
        client.agents.create_version_from_code(name, definition=code_definition(), code=code)
    answer = _http(dockyard).get(f"{dockyard.endpoint}/agents/{name}/code:download",
                                 params={"api-version": "v1", "agent_version": "1"})
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "application/zip"
    assert answer.headers["x-ms-agent-version"] == "1"
    assert answer.headers["x-ms-code-zip-sha256"] == sha256(archive) == hashlib.sha256(answer.content).hexdigest()
    latest = _http(dockyard).get(f"{dockyard.endpoint}/agents/{name}/code:download", params={"api-version": "v1"})
    assert latest.headers["x-ms-agent-version"] == "2" and latest.content == other.read_bytes()


def test_a_new_definition_with_the_same_code_shares_the_bundle(client: AIProjectClient, code_dir: Path,
                                                               tmp_path: Path) -> None:
    # (The same code *and* definition answers the existing version: tests/test_control_plane.py, where the
    # version's status is known; here the runtime may already have failed it, which makes a retry a new version.)
    name = unique("shared")
    archive = make_zip(tmp_path / "agent.zip", {"main.py": MAIN + b"# shared bundle\n"})
    with archive.open("rb") as code:
        first = client.agents.create_version_from_code(name, definition=code_definition(), code=code)
    with archive.open("rb") as code:
        changed = client.agents.create_version_from_code(name, definition=code_definition(resolution="remote_build"),
                                                         code=code)
    assert (first.version, changed.version) == ("1", "2")
    assert changed.definition.code_configuration.content_hash == first.definition.code_configuration.content_hash
    assert {p.name for p in code_dir.iterdir() if p.name.startswith(sha256(archive))} == {
        sha256(archive), f"{sha256(archive)}.zip"}


def test_a_sent_content_hash_is_replaced_by_the_header(client: AIProjectClient, tmp_path: Path) -> None:
    archive = make_zip(tmp_path / "agent.zip", {"main.py": MAIN})
    definition = code_definition()
    definition["code_configuration"]["content_hash"] = "f" * 64  # read-only: the SDK would not send it itself
    with archive.open("rb") as code:
        created = client.agents.create_version_from_code(unique("hash"), definition=definition, code=code)
    assert created.definition.code_configuration.content_hash == sha256(archive)


def test_json_create_with_code_configuration_says_to_upload(client: AIProjectClient) -> None:
    with pytest.raises(HttpResponseError) as caught:
        client.agents.create_version(agent_name=unique("json"), definition=code_definition())
    assert caught.value.status_code == 400
    assert caught.value.error.code == "CodeUploadRequired"
    assert "create_version_from_code" in caught.value.error.message


def test_image_definition_is_refused_by_the_code_upload(client: AIProjectClient, tmp_path: Path) -> None:
    image = HostedAgentDefinition(cpu="1", memory="2Gi", container_configuration=ContainerConfiguration(image="a/b:1"),
                                  protocol_versions=[ProtocolVersionRecord(protocol="responses", version="v1")])
    archive = make_zip(tmp_path / "agent.zip", {"main.py": MAIN})
    with archive.open("rb") as code, pytest.raises(HttpResponseError) as caught:
        client.agents.create_version_from_code(unique("image"), definition=image, code=code)
    assert caught.value.status_code == 400 and "code_configuration" in caught.value.error.message


def test_download_code_of_an_image_version_unknown_agent_or_version(client: AIProjectClient, tmp_path: Path) -> None:
    name = unique("img")
    image = HostedAgentDefinition(cpu="1", memory="2Gi", container_configuration=ContainerConfiguration(image="a/b:1"),
                                  protocol_versions=[ProtocolVersionRecord(protocol="responses", version="v1")])
    client.agents.create_version(agent_name=name, definition=image)
    with pytest.raises(HttpResponseError) as caught:
        b"".join(client.agents.download_code(name))
    assert caught.value.status_code == 409 and caught.value.error.code == "AgentNotCodeBased"
    with pytest.raises(ResourceNotFoundError):
        b"".join(client.agents.download_code(unique("nobody")))
    with pytest.raises(ResourceNotFoundError):
        b"".join(client.agents.download_code(name, agent_version="7"))


def test_wrong_hash_is_refused_and_leaves_nothing(client: AIProjectClient, code_dir: Path, tmp_path: Path) -> None:
    archive = make_zip(tmp_path / "agent.zip", {"main.py": MAIN + b"# wrong hash\n"})
    before = snapshot(code_dir)
    with archive.open("rb") as code, pytest.raises(HttpResponseError) as caught:
        client.agents.create_version_from_code(unique("wrong"), definition=code_definition(), code=code,
                                               code_zip_sha256="0" * 64)
    assert caught.value.status_code == 400 and caught.value.error.code == "CodeHashMismatch"
    assert sha256(archive) in caught.value.error.message and "0" * 64 in caught.value.error.message
    assert snapshot(code_dir) == before


def _symlink_zip(path: Path) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("main.py", MAIN)
        link = zipfile.ZipInfo("config.py")
        link.create_system = 3
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        archive.writestr(link, "/etc/passwd")
    return path


def _bomb_zip(path: Path) -> Path:
    """300 MB of zeros that deflate to about 300 KB, written in pieces (never 300 MB in memory)."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("main.py", MAIN)
        with archive.open("data.bin", "w", force_zip64=True) as out:
            block = bytes(1024 * 1024)
            for _ in range(300):
                out.write(block)
    return path


HOSTILE: dict[str, tuple[Any, str, str]] = {
    "traversal": (lambda p: make_zip(p, {"main.py": MAIN, "../../evil.py": b"x"}), "CodeZipUnsafePath",
                  "../../evil.py"),
    "backslash traversal": (lambda p: make_zip(p, {"main.py": MAIN, "..\\evil.py": b"x"}), "CodeZipUnsafePath",
                            "evil.py"),
    "absolute": (lambda p: make_zip(p, {"main.py": MAIN, "/etc/cron.d/evil": b"x"}), "CodeZipUnsafePath",
                 "/etc/cron.d/evil"),
    "symlink": (_symlink_zip, "CodeZipLinkNotAllowed", "config.py"),
    "bomb": (_bomb_zip, "CodeZipCompressionRatio", "data.bin"),
    "too many files": (lambda p: make_zip(p, {"main.py": MAIN, **{f"f/{i}.py": b"" for i in range(10_001)}},
                                          compression=zipfile.ZIP_STORED),
                       "CodeZipTooManyEntries", "10002"),
    "missing entry point": (lambda p: make_zip(p, {"app.py": MAIN, "README.md": b"hi"}), "EntryPointNotFound",
                            "app.py"),
    "not a zip": (lambda p: (p.write_bytes(b"PK not really a zip" * 100), p)[1], "CodeZipInvalid", "not a zip"),
}


@pytest.mark.parametrize("case", list(HOSTILE))
def test_hostile_zips_are_refused_and_leave_nothing(
    client: AIProjectClient, code_dir: Path, tmp_path: Path, case: str
) -> None:
    build, code, mentioned = HOSTILE[case]
    archive = build(tmp_path / "agent.zip")
    before = snapshot(code_dir)
    name = unique("hostile")
    with archive.open("rb") as upload, pytest.raises(HttpResponseError) as caught:
        client.agents.create_version_from_code(name, definition=code_definition(), code=upload)
    assert caught.value.status_code == 400, caught.value
    assert caught.value.error.code == code
    assert mentioned in caught.value.error.message
    assert snapshot(code_dir) == before
    assert not (tmp_path.parent / "evil.py").exists()
    with pytest.raises(ResourceNotFoundError):
        client.agents.get(agent_name=name)


def test_deleting_the_last_version_removes_its_bundle(client: AIProjectClient, code_dir: Path, tmp_path: Path) -> None:
    archive = make_zip(tmp_path / "agent.zip", {"main.py": MAIN + b"# shared\n"})
    digest = sha256(archive)
    first, second = unique("first"), unique("second")
    for name in (first, second):
        with archive.open("rb") as code:
            client.agents.create_version_from_code(name, definition=code_definition(), code=code)
    client.agents.delete_version(agent_name=first, agent_version="1")
    assert (code_dir / digest).is_dir() and (code_dir / f"{digest}.zip").is_file()  # the second still uses it
    client.agents.delete(agent_name=second)
    assert not (code_dir / digest).exists() and not (code_dir / f"{digest}.zip").exists()


# -- what the SDK cannot send -------------------------------------------------------------------------


def _http(dockyard: DockyardProcess) -> httpx.Client:
    token = DefaultAzureCredential().get_token("https://ai.azure.com/.default").token
    return httpx.Client(verify=ssl.create_default_context(cafile=str(dockyard.home / "tls" / "ca.pem")), timeout=120,
                        headers={"Authorization": f"Bearer {token}"})


BOUNDARY = "dockyardtestboundary"
METADATA = (
    b'{"definition": {"kind": "hosted", "cpu": "1", "memory": "2Gi", "protocol_versions": '
    b'[{"protocol": "responses", "version": "v1"}], "code_configuration": {"runtime": "python_3_12", '
    b'"entry_point": ["python", "main.py"], "dependency_resolution": "bundled"}}}'
)


def _multipart(code: Iterator[bytes]) -> Iterator[bytes]:
    yield (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"metadata\"\r\n\r\n").encode() + METADATA
    yield (f"\r\n--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"code\"; filename=\"agent.zip\"\r\n"
           "Content-Type: application/octet-stream\r\n\r\n").encode()
    yield from code
    yield f"\r\n--{BOUNDARY}--\r\n".encode()


def _post(dockyard: DockyardProcess, content: Any, headers: dict[str, str] | None = None) -> httpx.Response:
    return _http(dockyard).post(
        f"{dockyard.endpoint}/agents/{unique('raw')}/versions", params={"api-version": "v1"}, content=content,
        headers={"Content-Type": f"multipart/form-data; boundary={BOUNDARY}",
                 "x-ms-code-zip-sha256": "a" * 64, **(headers or {})},
    )


def test_an_upload_past_250_mb_is_refused_while_streaming(
    sdk_env: Any, dockyard: DockyardProcess, code_dir: Path
) -> None:
    before = snapshot(code_dir)
    sent = 0

    def zeros() -> Iterator[bytes]:
        nonlocal sent
        block = bytes(1024 * 1024)
        for _ in range(400):  # 400 MB, a block at a time: chunked, no Content-Length to go by
            sent += len(block)
            yield block

    try:
        answer = _post(dockyard, _multipart(zeros()))
    except httpx.HTTPError as exc:  # the server may close the connection under a sender that keeps going
        pytest.fail(f"no 413 answer: {exc!r}")
    assert answer.status_code == 413, answer.text
    assert answer.json()["error"]["code"] == "CodeTooLarge"
    assert snapshot(code_dir) == before


def test_a_declared_length_past_the_limit_is_refused_before_reading(
    sdk_env: Any, dockyard: DockyardProcess, code_dir: Path
) -> None:
    before = snapshot(code_dir)
    read = 0

    def body() -> Iterator[bytes]:
        nonlocal read
        for _ in range(300):
            read += 1
            yield bytes(1024 * 1024)

    answer = _post(dockyard, body(), headers={"Content-Length": str(300 * 1024 * 1024)})
    assert answer.status_code == 413 and answer.json()["error"]["code"] == "CodeTooLarge"
    assert snapshot(code_dir) == before


def test_missing_hash_header_and_missing_parts(sdk_env: Any, dockyard: DockyardProcess) -> None:
    zipped = io.BytesIO()
    with zipfile.ZipFile(zipped, "w") as archive:
        archive.writestr("main.py", MAIN)
    no_hash = _http(dockyard).post(
        f"{dockyard.endpoint}/agents/{unique('raw')}/versions", params={"api-version": "v1"},
        content=b"".join(_multipart(iter([zipped.getvalue()]))),
        headers={"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"},
    )
    assert no_hash.status_code == 400 and no_hash.json()["error"]["code"] == "MissingCodeHash"
    only_metadata = (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"metadata\"\r\n\r\n").encode() + METADATA
    only_metadata += f"\r\n--{BOUNDARY}--\r\n".encode()
    answer = _post(dockyard, only_metadata)
    assert answer.status_code == 400 and "'code'" in answer.json()["error"]["message"]


def _peak_rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads the server's peak memory from /proc")
def test_a_large_upload_is_never_held_in_memory(sdk_env: Any, dockyard: DockyardProcess, code_dir: Path) -> None:
    """240 MB received to disk, hashed and refused: the server's peak memory grows by far less than that."""
    assert dockyard.process is not None
    before_files = snapshot(code_dir)
    _post(dockyard, b"warm-up")  # the first multipart request imports what it needs
    # Reset the peak (VmHWM) so earlier tests' peaks cannot hide this one's.
    Path(f"/proc/{dockyard.process.pid}/clear_refs").write_text("5")
    before = _peak_rss(dockyard.process.pid)
    block = b"\xa5" * (1024 * 1024)
    answer = _post(dockyard, _multipart(iter([block] * 240)))
    assert answer.status_code == 400 and answer.json()["error"]["code"] == "CodeHashMismatch", answer.text
    grew = _peak_rss(dockyard.process.pid) - before
    assert grew < 64 * 1024 * 1024, f"peak memory grew by {grew // (1024 * 1024)} MiB for a 240 MiB upload"
    assert snapshot(code_dir) == before_files


def test_malformed_multipart_bodies(sdk_env: Any, dockyard: DockyardProcess, code_dir: Path) -> None:
    before = snapshot(code_dir)
    extra = (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"extra\"\r\n\r\nx\r\n--{BOUNDARY}--\r\n").encode()
    answer = _post(dockyard, extra)
    assert answer.status_code == 400 and "'extra'" in answer.json()["error"]["message"]
    twice = b"".join(_multipart(iter([b"PK"]))).replace(f"\r\n--{BOUNDARY}--".encode(), b"") + (
        f"\r\n--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"code\"; filename=\"b.zip\"\r\n\r\nPK\r\n"
        f"--{BOUNDARY}--\r\n").encode()
    answer = _post(dockyard, twice)
    assert answer.status_code == 400 and "more than one 'code'" in answer.json()["error"]["message"]
    cut = b"".join(_multipart(iter([b"PK" * 1000])))[:-30]
    answer = _post(dockyard, cut)
    assert answer.status_code == 400 and answer.json()["error"]["code"] == "InvalidRequestBody"
    bad_json = b"".join(_multipart(iter([b"PK"]))).replace(METADATA, b"{not json")
    answer = _post(dockyard, bad_json)
    assert answer.status_code == 400 and "'metadata' part is not valid JSON" in answer.json()["error"]["message"]
    no_boundary = _post(dockyard, b"x", headers={"Content-Type": "multipart/form-data"})
    assert no_boundary.status_code == 400 and "boundary" in no_boundary.json()["error"]["message"]
    assert snapshot(code_dir) == before


def test_start_up_removes_partial_uploads_and_unreferenced_bundles(tmp_path: Path) -> None:
    home = tmp_path / "home"
    DockyardProcess(home=home, extra_args=("--no-engine",)).start().stop()
    code_dir = home / "code"
    (code_dir / ".incoming").mkdir(parents=True)
    (code_dir / ".incoming" / "cut.zip").write_bytes(b"PK partial upload")
    orphan = code_dir / ("e" * 64)
    (orphan / "sub").mkdir(parents=True)
    (orphan / "sub" / "main.py").write_bytes(MAIN)
    (orphan / "sub").chmod(0o555)
    (code_dir / f"{'e' * 64}.zip").write_bytes(b"PK")
    (code_dir / f".unpack-{'f' * 16}-dead").mkdir()
    server = DockyardProcess(home=home, extra_args=("--no-engine",)).start()
    try:
        assert snapshot(code_dir) == set()
    finally:
        server.stop()
