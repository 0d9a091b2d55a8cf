"""The engine every test module here needs (the modules skip without one, unless CI forbids it)."""

from __future__ import annotations

import pytest
from support.engine import require_engine


@pytest.fixture(scope="module")
def engine_url() -> str:
    return require_engine()
