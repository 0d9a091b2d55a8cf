from __future__ import annotations

import pytest

from dockyard.domain.errors import BadRequest
from dockyard.domain.paging import PageRequest


def test_defaults() -> None:
    assert PageRequest.parse(None, None, None, None) == PageRequest(limit=20, order="desc", after=None, before=None)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ((1, "asc", None, None), PageRequest(limit=1, order="asc")),
        ((100, "desc", None, None), PageRequest(limit=100, order="desc")),
        ((5, None, "agent:3", None), PageRequest(limit=5, order="desc", after="agent:3")),
        ((5, "asc", None, "agent:3"), PageRequest(limit=5, order="asc", before="agent:3")),
        ((None, None, "", ""), PageRequest()),
        ((None, None, "a", ""), PageRequest(after="a")),
    ],
)
def test_parse(args: tuple[object, ...], expected: PageRequest) -> None:
    assert PageRequest.parse(*args) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("args", "param", "mentions"),
    [
        ((0, None, None, None), "limit", "1 to 100"),
        ((101, None, None, None), "limit", "1 to 100"),
        ((-1, None, None, None), "limit", "1 to 100"),
        ((None, "sideways", None, None), "order", "'sideways'"),
        ((None, "ASC", None, None), "order", "'asc' or 'desc'"),
        ((None, "", None, None), "order", "'asc' or 'desc'"),
    ],
)
def test_parse_rejects(args: tuple[object, ...], param: str, mentions: str) -> None:
    with pytest.raises(BadRequest) as info:
        PageRequest.parse(*args)  # type: ignore[arg-type]
    error = info.value
    assert error.code == "InvalidPaging"
    assert error.status_code == 400
    assert error.param == param
    assert mentions in error.message


def test_after_and_before_together_are_accepted() -> None:
    """The SDKs send both when iterating a `before` listing: keep the caller's `before`, page with `after`."""
    assert PageRequest.parse(2, "asc", "a:3", "a:9") == PageRequest(limit=2, order="asc", after="a:3", before="a:9")
