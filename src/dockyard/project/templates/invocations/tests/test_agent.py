"""Tests for {{name}}: the answer itself, then the whole Invocations round trip through the hosting adapter.

    pip install -r requirements.txt -r requirements-dev.txt
    python -m pytest
"""

from __future__ import annotations

import asyncio

import pytest

from agent import reply, words


def test_reply_echoes_the_input() -> None:
    assert asyncio.run(reply("hello")) == "echo: hello"


def test_streamed_pieces_add_up_to_the_reply() -> None:
    async def collect() -> list[str]:
        return [piece async for piece in words("one two three")]

    assert "".join(asyncio.run(collect())) == "echo: one two three"


def test_invocations_round_trip() -> None:
    """POST /invocations through the adapter, in process, as Foundry (or dockyard) would call the container."""
    pytest.importorskip("azure.ai.agentserver.invocations", reason="pip install -r requirements.txt")
    httpx = pytest.importorskip("httpx", reason="pip install -r requirements-dev.txt")
    from main import app

    async def call() -> tuple[dict, str]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://agent") as client:
            assert (await client.get("/readiness")).status_code == 200
            plain = await client.post("/invocations", json={"message": "hello"})
            assert plain.status_code == 200, plain.text
            streamed = await client.post("/invocations", json={"message": "hello", "stream": True})
            return plain.json(), streamed.text

    body, events = asyncio.run(call())
    assert body == {"reply": "echo: hello"}
    assert "event: done" in events and '"delta": "hello"' in events
