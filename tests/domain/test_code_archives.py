"""The rules a code zip must pass, on central directories of real zips built here."""

from __future__ import annotations

import io
import stat
import zipfile

import pytest

from dockyard.domain import code_archives
from dockyard.domain.code_archives import (
    ArchiveEntry,
    UnpackBudget,
    check_entry_point,
    check_listing,
    entry_point_target,
    parse_content_hash,
    safe_path,
)
from dockyard.domain.errors import BadRequest


def listing(*entries: str | zipfile.ZipInfo, data: bytes = b"x") -> list[zipfile.ZipInfo]:
    """A real zip's central directory, read back the way dockyard reads an upload."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for entry in entries:
            archive.writestr(entry, b"" if str(getattr(entry, "filename", entry)).endswith("/") else data)
    with zipfile.ZipFile(io.BytesIO(buffer.getvalue())) as archive:
        return archive.infolist()


def refused(infos: list[zipfile.ZipInfo]) -> BadRequest:
    with pytest.raises(BadRequest) as caught:
        check_listing(infos)
    return caught.value


def typed(name: str, kind: int) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name)
    info.create_system = 3
    info.external_attr = (kind | 0o644) << 16
    return info


# -- names --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [("main.py", "main.py"), ("./main.py", "main.py"), ("src//app/./x.py", "src/app/x.py"),
     ("src\\app\\x.py", "src/app/x.py"), ("src/", "src"), ("./", ""), ("café/ünï.py", "café/ünï.py")],
)
def test_safe_paths(name: str, expected: str) -> None:
    assert safe_path(name) == expected


@pytest.mark.parametrize(
    ("name", "why"),
    [("../x.py", "'..'"), ("a/../../x.py", "'..'"), ("..\\..\\x.py", "'..'"), ("a/..", "'..'"),
     ("/etc/passwd", "absolute"), ("\\windows\\x", "absolute"), ("C:/x.py", "absolute"), ("c:x.py", "absolute"),
     ("x\x00.py", "NUL"), ("x\n.py", "control"), ("a" * 300, "255 bytes"), ("a/" * 600, "1024 characters")],
)
def test_unsafe_paths_are_refused_naming_the_entry(name: str, why: str) -> None:
    with pytest.raises(BadRequest) as caught:
        safe_path(name)
    assert caught.value.code == code_archives.CODE_ZIP_UNSAFE_PATH
    assert why in caught.value.message and repr(name)[:40] in caught.value.message


def test_a_nul_in_a_name_is_seen_though_zipfile_cuts_the_name_there() -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("main.py", b"x")
        archive.writestr("evil.pyQZQ.txt", b"x")  # zipfile would cut a NUL off before writing: put it in after
    with zipfile.ZipFile(io.BytesIO(buffer.getvalue().replace(b"QZQ", b"\x00ZQ"))) as archive:
        infos = archive.infolist()
    assert infos[1].filename == "evil.py"  # what zipfile shows; the zip says more
    assert refused(infos).code == code_archives.CODE_ZIP_UNSAFE_PATH


# -- listings -----------------------------------------------------------------------------------------


def test_a_good_listing_gives_safe_paths_in_order() -> None:
    entries = check_listing(listing("main.py", "pkg/", "pkg/__init__.py", "./README.md"))
    assert [(e.path, e.is_dir) for e in entries] == [("main.py", False), ("pkg", True), ("pkg/__init__.py", False),
                                                     ("README.md", False)]


@pytest.mark.parametrize(
    ("kind", "code", "what"),
    [(stat.S_IFLNK, code_archives.CODE_ZIP_LINK, "symbolic link"),
     (stat.S_IFCHR, code_archives.CODE_ZIP_SPECIAL_FILE, "character device"),
     (stat.S_IFBLK, code_archives.CODE_ZIP_SPECIAL_FILE, "block device"),
     (stat.S_IFIFO, code_archives.CODE_ZIP_SPECIAL_FILE, "named pipe"),
     (stat.S_IFSOCK, code_archives.CODE_ZIP_SPECIAL_FILE, "socket")],
)
def test_links_and_special_files_are_refused(kind: int, code: str, what: str) -> None:
    error = refused(listing("main.py", typed("odd", kind)))
    assert error.code == code and what in error.message and "'odd'" in error.message


def test_regular_files_with_unix_modes_pass() -> None:
    entries = check_listing(listing(typed("run.sh", stat.S_IFREG), typed("bin/", stat.S_IFDIR)))
    assert [e.is_dir for e in entries] == [False, True]


@pytest.mark.parametrize(
    "names",
    [("main.py", "main.py"), ("main.py", "./main.py"), ("a/b.py", "a\\b.py"), ("a", "a/b.py"), ("a/b.py", "a"),
     ("a/", "a")],
)
@pytest.mark.filterwarnings("ignore:Duplicate name")
def test_duplicates_and_files_where_folders_must_be_are_refused(names: tuple[str, str]) -> None:
    assert refused(listing(*names)).code == code_archives.CODE_ZIP_DUPLICATE_ENTRY


def test_a_folder_listed_twice_is_fine() -> None:
    assert [e.path for e in check_listing(listing("a/", "./a/", "a/x.py"))] == ["a", "a", "a/x.py"]


def test_too_many_entries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(code_archives, "MAX_ENTRIES", 3)
    assert len(check_listing(listing("a", "b", "c"))) == 3
    error = refused(listing("a", "b", "c", "d"))
    assert error.code == code_archives.CODE_ZIP_TOO_MANY_ENTRIES and "4 entries" in error.message


def test_the_unpacked_total_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(code_archives, "MAX_UNPACKED_BYTES", 2500)
    data = bytes(range(256)) * 4  # 1024 bytes that barely compress
    assert len(check_listing(listing("a", "b", data=data))) == 2
    error = refused(listing("a", "b", "c", data=data))
    assert error.code == code_archives.CODE_ZIP_UNPACKED_TOO_LARGE and "'c'" in error.message


def test_a_highly_compressed_entry_is_a_bomb_once_it_is_big() -> None:
    small = listing("fixture.json", data=b"{}" * 100_000)  # 200 KB at ~500:1: fine, below the floor
    assert check_listing(small)
    error = refused(listing("main.py", "zeros.bin", data=bytes(5 * 1024 * 1024)))
    assert error.code == code_archives.CODE_ZIP_COMPRESSION_RATIO and "'main.py'" in error.message


def test_encrypted_entries_are_refused() -> None:
    infos = listing("main.py")
    infos[0].flag_bits |= 0x1
    assert refused(infos).code == code_archives.CODE_ZIP_ENCRYPTED


def test_a_folder_entry_holding_bytes_is_refused() -> None:
    info = typed("data", stat.S_IFDIR)
    infos = listing(info)
    assert refused(infos).code == code_archives.CODE_ZIP_INVALID


# -- while unpacking ----------------------------------------------------------------------------------


def test_the_budget_counts_real_bytes_against_the_header() -> None:
    info = listing("main.py", data=b"y" * 2000)[0]
    entry = ArchiveEntry(path="main.py", info=info, is_dir=False)
    budget = UnpackBudget()
    budget.count(entry, 2000, 2000)
    with pytest.raises(BadRequest) as caught:
        budget.count(entry, 2001, 1)
    assert caught.value.code == code_archives.CODE_ZIP_INVALID and "2000 bytes its header declares" in (
        caught.value.message)


def test_the_budget_counts_the_ratio_on_real_bytes() -> None:
    info = zipfile.ZipInfo("liar.bin")
    info.file_size, info.compress_size = 10**9, 1000  # a header that passed the listing check would not say this
    entry = ArchiveEntry(path="liar.bin", info=info, is_dir=False)
    budget = UnpackBudget()
    budget.count(entry, 100_000, 100_000)
    with pytest.raises(BadRequest) as caught:
        budget.count(entry, 2 * 1024 * 1024, 2 * 1024 * 1024 - 100_000)
    assert caught.value.code == code_archives.CODE_ZIP_COMPRESSION_RATIO


# -- entry points -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("entry_point", "target"),
    [(["python", "main.py"], ("file", "main.py")), (["python3", "-u", "./src/app.py"], ("file", "src/app.py")),
     (["python3.12", "-X", "utf8", "main.py", "--port", "8088"], ("file", "main.py")),
     (["/usr/bin/python", "-W", "ignore", "main.py"], ("file", "main.py")),
     (["python", "-m", "app.server"], ("module", "app.server")), (["python", "-mapp"], ("module", "app")),
     (["python", "-c", "print(1)"], None), (["python"], None), (["./run.sh"], ("file", "run.sh")),
     (["main.py"], ("file", "main.py")), (["uvicorn", "main:app"], None), (["python", "/app/main.py"], None)],
)
def test_entry_point_targets(entry_point: list[str], target: tuple[str, str] | None) -> None:
    assert entry_point_target(entry_point) == target


def test_the_entry_point_file_must_be_in_the_zip() -> None:
    check_entry_point(["python", "main.py"], ["main.py", "lib/x.py"])
    with pytest.raises(BadRequest) as caught:
        check_entry_point(["python", "main.py"], ["app.py", "lib/x.py"])
    assert caught.value.code == code_archives.ENTRY_POINT_NOT_FOUND
    assert "'main.py'" in caught.value.message and "app.py, lib/" in caught.value.message


def test_a_zip_of_the_folder_rather_than_its_contents_gets_a_hint() -> None:
    with pytest.raises(BadRequest) as caught:
        check_entry_point(["python", "main.py"], ["my-agent/main.py", "my-agent/lib.py"])
    assert "inside my-agent/" in caught.value.message


def test_modules_are_found_at_the_root_or_in_packages() -> None:
    check_entry_point(["python", "-m", "app"], ["app/__main__.py"])
    check_entry_point(["python", "-m", "app.server"], ["app/server.py"])
    check_entry_point(["python", "-m", "uvicorn"], ["packages/uvicorn/__init__.py"])
    with pytest.raises(BadRequest) as caught:
        check_entry_point(["python", "-m", "app"], ["main.py"])
    assert "module 'app'" in caught.value.message


def test_commands_the_zip_cannot_hold_are_not_checked() -> None:
    check_entry_point(["uvicorn", "main:app"], ["main.py"])


# -- the hash header ----------------------------------------------------------------------------------


def test_content_hash_header() -> None:
    assert parse_content_hash(" " + "AB" * 32 + " ") == "ab" * 32
    for bad, code in ((None, "MissingCodeHash"), ("", "MissingCodeHash"), ("abc", "InvalidCodeHash"),
                      ("g" * 64, "InvalidCodeHash")):
        with pytest.raises(BadRequest) as caught:
            parse_content_hash(bad)
        assert caught.value.code == code


def test_a_hash_mismatch_names_both_hashes() -> None:
    code_archives.check_content_hash("a" * 64, "a" * 64)
    with pytest.raises(BadRequest) as caught:
        code_archives.check_content_hash("a" * 64, "b" * 64)
    assert caught.value.code == code_archives.CODE_HASH_MISMATCH
    assert "a" * 64 in caught.value.message and "b" * 64 in caught.value.message
