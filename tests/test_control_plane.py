"""The control plane's rules for code-based versions, on a real store and a real bundle folder."""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

from dockyard.control_plane import ControlPlane
from dockyard.domain.agents import VersionError, VersionStatus
from dockyard.domain.errors import BadRequest, Conflict
from dockyard.store.agents import AgentStore
from dockyard.store.code_bundles import CodeBundles

CODE = {"runtime": "python_3_12", "entry_point": ["python", "main.py"], "dependency_resolution": "bundled"}
PROTOCOLS = [{"protocol": "responses", "version": "v1"}]


def body(**code: Any) -> dict[str, Any]:
    return {"definition": {"kind": "hosted", "cpu": "1", "memory": "2Gi", "protocol_versions": PROTOCOLS,
                           "code_configuration": {**CODE, **code}}}


@pytest.fixture
def bundles(tmp_path: Path) -> CodeBundles:
    return CodeBundles(tmp_path / "code")


@pytest.fixture
def control(engine: Engine, bundles: CodeBundles) -> ControlPlane:
    return ControlPlane(AgentStore(engine), bundles=bundles)


def zipped(tmp_path: Path, text: bytes = b"print(1)\n") -> bytes:
    path = tmp_path / f"{hashlib.sha256(text).hexdigest()[:8]}.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("main.py", text)
    return path.read_bytes()


def upload(control: ControlPlane, name: str, data: bytes, sent: dict[str, Any] | None = None,
           content_hash: str | None = None) -> Any:
    assert control.bundles is not None
    incoming = control.bundles.receive()
    incoming.write(data)
    try:
        return control.create_version_from_code("default", name, sent or body(), incoming,
                                                content_hash or hashlib.sha256(data).hexdigest())
    finally:
        incoming.discard()


def test_the_same_code_and_definition_is_the_same_version(control: ControlPlane, tmp_path: Path) -> None:
    data = zipped(tmp_path)
    first = upload(control, "agent", data)
    assert first.definition.code_configuration["content_hash"] == hashlib.sha256(data).hexdigest()
    assert upload(control, "agent", data).number == first.number == 1
    assert upload(control, "agent", data, body(dependency_resolution="remote_build")).number == 2
    assert upload(control, "agent", zipped(tmp_path, b"print(2)\n"), body(dependency_resolution="remote_build")
                  ).number == 3


def test_the_same_upload_after_a_failure_is_a_retry(control: ControlPlane, engine: Engine, tmp_path: Path) -> None:
    data = zipped(tmp_path)
    upload(control, "agent", data)
    store = AgentStore(engine)
    uid = store.version_uid("default", "agent", "1")
    assert store.set_status(uid, VersionStatus.FAILED, VersionError("RemoteBuildFailed", "no network"))
    assert upload(control, "agent", data).number == 2


def test_a_wrong_hash_stores_nothing(control: ControlPlane, bundles: CodeBundles, tmp_path: Path) -> None:
    with pytest.raises(BadRequest) as caught:
        upload(control, "agent", zipped(tmp_path), content_hash="0" * 64)
    assert caught.value.code == "CodeHashMismatch"
    assert bundles.stored() == set()
    assert not list(control.store.desired_versions())


def test_a_json_create_of_a_code_definition_is_told_to_upload(control: ControlPlane) -> None:
    with pytest.raises(BadRequest) as caught:
        control.create_version("default", "agent", body())
    assert caught.value.code == "CodeUploadRequired" and "create_version_from_code" in caught.value.message


def test_an_image_definition_is_not_a_code_upload(control: ControlPlane, tmp_path: Path) -> None:
    image = {"definition": {"kind": "hosted", "protocol_versions": PROTOCOLS,
                            "container_configuration": {"image": "example.com/agent:1"}}}
    with pytest.raises(BadRequest) as caught:
        upload(control, "agent", zipped(tmp_path), image)
    assert "code_configuration" in caught.value.message
    control.create_version("default", "image", image)
    with pytest.raises(Conflict) as conflict:
        control.code_of("default", "image", None)
    assert conflict.value.code == "AgentNotCodeBased"


def test_code_of_the_latest_or_a_named_version(control: ControlPlane, tmp_path: Path) -> None:
    one, two = zipped(tmp_path, b"1\n"), zipped(tmp_path, b"2\n")
    upload(control, "agent", one)
    upload(control, "agent", two)
    assert control.code_of("default", "agent", None)[1] == hashlib.sha256(two).hexdigest()
    version, digest = control.code_of("default", "agent", "1")
    assert (version.number, digest) == (1, hashlib.sha256(one).hexdigest())


def test_a_bundle_goes_with_the_last_version_that_uses_it(
    control: ControlPlane, bundles: CodeBundles, tmp_path: Path
) -> None:
    shared, own = zipped(tmp_path, b"shared\n"), zipped(tmp_path, b"own\n")
    upload(control, "a", shared)
    upload(control, "b", shared)
    upload(control, "b", own)
    shared_hash, own_hash = hashlib.sha256(shared).hexdigest(), hashlib.sha256(own).hexdigest()
    control.delete_version("default", "a", "1")
    assert bundles.stored() == {shared_hash, own_hash}
    control.delete_version("default", "b", "2")
    assert bundles.stored() == {shared_hash}
    control.delete_agent("default", "b")
    assert bundles.stored() == set()


def test_collecting_at_start_up_keeps_what_versions_refer_to(
    control: ControlPlane, bundles: CodeBundles, tmp_path: Path
) -> None:
    data = zipped(tmp_path)
    upload(control, "agent", data)
    orphan = bundles.tree_path("e" * 64)
    orphan.mkdir()
    assert control.collect_code_bundles() == ["e" * 64]
    assert bundles.stored() == {hashlib.sha256(data).hexdigest()}
