"""List paging as the Foundry SDKs page.

The SDKs read `data` and `last_id` and ask again with `after=<last_id>` until `last_id` is empty, so
an empty page must carry `last_id: null` or they loop forever. `has_more` says whether more items lie
beyond the page in the direction of travel. The SDKs keep a caller's `before` on every page and add
`after=<last_id>`, so both together mean "the items between the two".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, Literal, TypeVar

from dockyard.domain.errors import BadRequest

T = TypeVar("T")
Order = Literal["asc", "desc"]

DEFAULT_LIMIT = 20
MAX_LIMIT = 100


@dataclass(frozen=True)
class PageRequest:
    limit: int = DEFAULT_LIMIT
    order: Order = "desc"
    after: str | None = None
    before: str | None = None

    @classmethod
    def parse(cls, limit: int | None, order: str | None, after: str | None, before: str | None) -> PageRequest:
        if limit is None:
            limit = DEFAULT_LIMIT
        if not 1 <= limit <= MAX_LIMIT:
            raise BadRequest(
                f"limit {limit} is out of range: use 1 to {MAX_LIMIT} (default {DEFAULT_LIMIT}).",
                code="InvalidPaging",
                param="limit",
            )
        if order is None:
            order = "desc"
        if order not in ("asc", "desc"):
            raise BadRequest(f"order {order!r} is not valid: use 'asc' or 'desc'.", code="InvalidPaging", param="order")
        return cls(limit=limit, order=order, after=after or None, before=before or None)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Page(Generic[T]):
    items: list[T]
    has_more: bool
