"""Session file paths and sizes: what stays inside a session's home, and what is refused."""

from __future__ import annotations

import pytest

from dockyard.domain.session_files import (
    MAX_UPLOAD_BYTES,
    InvalidSessionFilePath,
    SessionFileEntry,
    SessionFileTooLarge,
    check_upload_size,
    page_of_entries,
    parse_session_path,
)


@pytest.mark.parametrize(("raw", "parts"), [
    ("a.txt", ("a.txt",)),
    ("dir/a.txt", ("dir", "a.txt")),
    ("./dir//a.txt", ("dir", "a.txt")),
    ("dir/./a.txt/", ("dir", "a.txt")),
    (".hidden", (".hidden",)),
    ("...", ("...",)),
    ("a..b", ("a..b",)),
    ("spaces in name.txt", ("spaces in name.txt",)),
    ("unicodé/ファイル", ("unicodé", "ファイル")),
])
def test_relative_paths_are_accepted_and_normalised(raw: str, parts: tuple[str, ...]) -> None:
    path = parse_session_path(raw, allow_root=False)
    assert path.parts == parts
    assert path.under("/session") == "/session/" + "/".join(parts)


@pytest.mark.parametrize("raw", [
    "..", "../a", "a/../../b", "a/..", "a/../b",  # any '..', even one that would stay inside
    "/etc/passwd", "/session/a", "~/a", "~root",  # absolute, or a home that is not the session's
    "a\\..\\b", "a\0b", "a\nb", "a\x7fb",  # backslashes and control characters
    "x" * 4097, "d/" + "n" * 256,  # too long
])
def test_paths_that_could_leave_the_home_are_refused(raw: str) -> None:
    with pytest.raises(InvalidSessionFilePath) as caught:
        parse_session_path(raw, allow_root=True)
    assert caught.value.status_code == 400 and caught.value.param == "path"


@pytest.mark.parametrize("raw", [None, "", " ", ".", "./"])
def test_the_home_itself_only_where_a_directory_is_meant(raw: str | None) -> None:
    assert parse_session_path(raw, allow_root=True).is_root
    with pytest.raises(InvalidSessionFilePath):
        parse_session_path(raw, allow_root=False)


def test_ancestors_and_parent() -> None:
    path = parse_session_path("a/b/c.txt", allow_root=False)
    assert [a.relative for a in path.ancestors()] == ["a", "a/b"]
    assert path.parent.relative == "a/b" and path.name == "c.txt"


def test_the_upload_limit_is_50_mb_inclusive() -> None:
    check_upload_size(MAX_UPLOAD_BYTES)
    with pytest.raises(SessionFileTooLarge) as caught:
        check_upload_size(MAX_UPLOAD_BYTES + 1)
    assert caught.value.status_code == 413 and MAX_UPLOAD_BYTES == 50 * 1024 * 1024


def _entries(*names: str) -> list[SessionFileEntry]:
    return [SessionFileEntry(name=n, size=1, is_directory=False, modified_time=0) for n in names]


def test_listing_pages_by_name_both_ways() -> None:
    entries = _entries("c", "a", "d", "b")
    page, more = page_of_entries(entries, limit=2)
    assert [e.name for e in page] == ["a", "b"] and more
    page, more = page_of_entries(entries, limit=2, after="b")
    assert [e.name for e in page] == ["c", "d"] and not more
    page, more = page_of_entries(entries, limit=10, order="desc", before="b")
    assert [e.name for e in page] == ["d", "c"] and not more
    assert page_of_entries(entries, after="gone") == ([], False)
