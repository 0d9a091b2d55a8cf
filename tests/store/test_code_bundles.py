"""Code bundles on a real disk: receive, check, unpack read-only, dedupe, prune; nothing left by a refusal."""

from __future__ import annotations

import hashlib
import stat
import struct
import threading
import zipfile
from pathlib import Path

import pytest

from dockyard.domain import code_archives
from dockyard.domain.errors import BadRequest, NotFound, PayloadTooLarge
from dockyard.store.code_bundles import CodeBundles, Incoming

MAIN = b"print('hi')\n"


def zip_bytes(tmp_path: Path, files: dict[str, bytes], name: str = "upload.zip") -> bytes:
    path = tmp_path / name
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for entry, data in files.items():
            archive.writestr(entry, data)
    return path.read_bytes()


def received(bundles: CodeBundles, data: bytes) -> Incoming:
    incoming = bundles.receive()
    for start in range(0, len(data), 1000):
        incoming.write(data[start:start + 1000])
    return incoming


def store(bundles: CodeBundles, data: bytes, entry_point: tuple[str, ...] = ("python", "main.py")) -> str:
    incoming = received(bundles, data)
    try:
        with bundles.admit(incoming, entry_point) as digest:
            return digest
    finally:
        incoming.discard()


def everything(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")} if root.exists() else set()


@pytest.fixture
def bundles(tmp_path: Path) -> CodeBundles:
    return CodeBundles(tmp_path / "home" / "code")


def test_a_stored_bundle_is_its_zip_and_a_read_only_tree(bundles: CodeBundles, tmp_path: Path) -> None:
    data = zip_bytes(tmp_path, {"main.py": MAIN, "pkg/__init__.py": b"", "pkg/deep/x.txt": b"x"})
    digest = store(bundles, data)
    assert digest == hashlib.sha256(data).hexdigest()
    tree = bundles.tree(digest)
    assert (tree / "main.py").read_bytes() == MAIN and (tree / "pkg" / "deep" / "x.txt").read_bytes() == b"x"
    assert bundles.archive(digest).read_bytes() == data
    for path in [tree, *tree.rglob("*")]:
        assert stat.S_IMODE(path.stat().st_mode) == (0o555 if path.is_dir() else 0o444), path
    assert everything(bundles.root) == {".incoming", digest, f"{digest}.zip", *(
        f"{digest}/{p}" for p in ("main.py", "pkg", "pkg/__init__.py", "pkg/deep", "pkg/deep/x.txt"))}


def test_identical_uploads_share_one_bundle(bundles: CodeBundles, tmp_path: Path) -> None:
    data = zip_bytes(tmp_path, {"main.py": MAIN})
    assert store(bundles, data) == store(bundles, data)
    assert bundles.stored() == {hashlib.sha256(data).hexdigest()}
    assert not any((bundles.root / ".incoming").iterdir())


def test_identical_uploads_at_the_same_time_share_one_bundle(bundles: CodeBundles, tmp_path: Path) -> None:
    data = zip_bytes(tmp_path, {"main.py": MAIN, **{f"m{i}.py": bytes(i) for i in range(200)}})
    digests: list[str] = []
    threads = [threading.Thread(target=lambda: digests.append(store(bundles, data))) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(digests) == 4 and len(set(digests)) == 1
    assert everything(bundles.root) - {".incoming"} == {digests[0], f"{digests[0]}.zip"} | {
        f"{digests[0]}/{name}" for name in ["main.py", *(f"m{i}.py" for i in range(200))]}


def test_an_upload_past_the_limit_is_refused_and_deleted(bundles: CodeBundles) -> None:
    incoming = bundles.receive(limit=10_000)
    incoming.write(bytes(9_000))
    with pytest.raises(PayloadTooLarge) as caught:
        incoming.write(bytes(2_000))
    assert caught.value.code == code_archives.CODE_TOO_LARGE
    assert not incoming.path.exists()


@pytest.mark.parametrize(
    ("files", "code"),
    [({"main.py": MAIN, "../x.py": b"x"}, code_archives.CODE_ZIP_UNSAFE_PATH),
     ({"app.py": MAIN}, code_archives.ENTRY_POINT_NOT_FOUND),
     ({"main.py": MAIN, "big.bin": bytes(3 * 1024 * 1024)}, code_archives.CODE_ZIP_COMPRESSION_RATIO)],
)
def test_a_refused_zip_leaves_nothing(bundles: CodeBundles, tmp_path: Path, files: dict[str, bytes],
                                      code: str) -> None:
    with pytest.raises(BadRequest) as caught:
        store(bundles, zip_bytes(tmp_path, files))
    assert caught.value.code == code
    assert everything(bundles.root) == {".incoming"}


def test_not_a_zip(bundles: CodeBundles) -> None:
    with pytest.raises(BadRequest) as caught:
        store(bundles, b"this is not a zip" * 50)
    assert caught.value.code == code_archives.CODE_ZIP_INVALID and "not a zip" in caught.value.message
    assert everything(bundles.root) == {".incoming"}


def test_a_header_that_understates_the_size_is_caught_while_unpacking(bundles: CodeBundles, tmp_path: Path) -> None:
    """The central directory says 10 bytes; the data inflates to 50,000. Unpacking stops and removes it all."""
    data = bytearray(zip_bytes(tmp_path, {"main.py": MAIN, "data.txt": b"abcde" * 10_000}))
    central = data.rfind(b"PK\x01\x02")  # the last central directory record: data.txt's
    struct.pack_into("<I", data, central + 24, 10)  # its uncompressed size
    local = data.find(b"PK\x03\x04", 10)  # data.txt's local header
    struct.pack_into("<I", data, local + 22, 10)
    with pytest.raises(BadRequest) as caught:
        store(bundles, bytes(data))
    assert caught.value.code in (code_archives.CODE_ZIP_INVALID, code_archives.CODE_ZIP_COMPRESSION_RATIO)
    assert "data.txt" in caught.value.message
    assert everything(bundles.root) == {".incoming"}


def test_prune_removes_what_no_version_refers_to(bundles: CodeBundles, tmp_path: Path) -> None:
    kept = store(bundles, zip_bytes(tmp_path, {"main.py": MAIN}, "a.zip"))
    dropped = store(bundles, zip_bytes(tmp_path, {"main.py": MAIN + b"#2"}, "b.zip"))
    assert bundles.prune({kept}) == [dropped]
    assert bundles.stored() == {kept}
    with pytest.raises(NotFound):
        bundles.tree(dropped)
    with pytest.raises(NotFound):
        bundles.archive(dropped)


def test_prune_leaves_a_bundle_an_upload_is_about_to_refer_to(bundles: CodeBundles, tmp_path: Path) -> None:
    incoming = received(bundles, zip_bytes(tmp_path, {"main.py": MAIN}))
    with bundles.admit(incoming, ("python", "main.py")) as digest:
        assert bundles.prune(set()) == []  # no version refers to it yet, but one is being recorded
        assert bundles.tree(digest).is_dir()
    assert bundles.prune(set()) == [digest]


def test_a_half_unpacked_tree_never_looks_stored_and_goes_with_the_next_prune(bundles: CodeBundles) -> None:
    digest = "c" * 64
    leftover = bundles.root / f".unpack-{digest[:16]}-dead"
    (leftover / "sub").mkdir(parents=True)
    (leftover / "sub" / "main.py").write_bytes(MAIN)
    (leftover / "sub").chmod(0o555)
    assert bundles.stored() == set()
    with pytest.raises(NotFound):
        bundles.tree(digest)
    bundles.prune(set())
    assert not leftover.exists()


def test_clear_incoming_removes_partial_uploads(bundles: CodeBundles) -> None:
    incoming = bundles.receive()
    incoming.write(b"PK partial")
    bundles.clear_incoming()
    assert not (bundles.root / ".incoming").exists()


def test_unknown_and_malformed_hashes(bundles: CodeBundles) -> None:
    with pytest.raises(NotFound):
        bundles.tree("d" * 64)
    with pytest.raises(BadRequest):
        bundles.tree("../../etc")


def test_executable_entries_stay_executable(bundles: CodeBundles, tmp_path: Path) -> None:
    path = tmp_path / "exec.zip"
    with zipfile.ZipFile(path, "w") as archive:
        script = zipfile.ZipInfo("run.sh")
        script.create_system = 3
        script.external_attr = (stat.S_IFREG | 0o755) << 16
        archive.writestr(script, "#!/bin/sh\necho hi\n")
        archive.writestr("main.py", MAIN)
    tree = bundles.tree(store(bundles, path.read_bytes(), ("./run.sh",)))
    assert stat.S_IMODE((tree / "run.sh").stat().st_mode) == 0o555
    assert stat.S_IMODE((tree / "main.py").stat().st_mode) == 0o444


def test_an_archive_removed_while_it_is_being_sent_is_still_sent_whole(bundles: CodeBundles, tmp_path: Path) -> None:
    data = zip_bytes(tmp_path, {"main.py": MAIN * 1000})
    digest = store(bundles, data)
    with bundles.open_archive(digest) as archive:
        assert bundles.prune(set()) == [digest]
        assert archive.read() == data
    with pytest.raises(NotFound):
        bundles.open_archive(digest)
