"""The console's calls to dockyard's own API, over HTTPS, as the operator.

What the console changes or invokes (enable, traffic split, a chat turn, a file upload, a log stream)
goes through the public API, not around it: the gateway, its spans, admission and ownership apply to
the console exactly as to any SDK caller. The token is the operator's, minted here with the server's
own authority (the identity `dockyard env` hands out), and re-minted before it expires.
"""

from __future__ import annotations

import ssl
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx

from dockyard.identity.ownership import OPERATOR_SUBJECT
from dockyard.identity.tokens import FOUNDRY_AUDIENCE, TokenAuthority

_RENEW_BEFORE_SECONDS = 300


class OwnApi:
    def __init__(self, base_url: str, ca_file: str, authority: TokenAuthority, timeout_seconds: float) -> None:
        self.base_url = base_url
        self._ca_file = ca_file
        self._context: ssl.SSLContext | None = None
        self._authority = authority
        self._timeout = timeout_seconds
        self._token = ""
        self._expires_on = 0

    def _headers(self) -> dict[str, str]:
        if time.time() > self._expires_on - _RENEW_BEFORE_SECONDS:
            issued = self._authority.issue(OPERATOR_SUBJECT, FOUNDRY_AUDIENCE)
            self._token, self._expires_on = issued.access_token, issued.expires_on
        return {"authorization": f"Bearer {self._token}"}

    @asynccontextmanager
    async def client(self, *, read_timeout: float | None = None) -> AsyncIterator[httpx.AsyncClient]:
        """A client for one exchange; `read_timeout=None` for streams that wait on a person (log following)."""
        if self._context is None:
            self._context = ssl.create_default_context(cafile=self._ca_file)
        timeout = httpx.Timeout(self._timeout, read=read_timeout)
        async with httpx.AsyncClient(base_url=self.base_url, verify=self._context, timeout=timeout,
                                     headers=self._headers()) as client:
            yield client

    async def call(self, method: str, path: str, *, json: Any = None, params: dict[str, str] | None = None,
                   content: bytes | None = None, headers: dict[str, str] | None = None) -> httpx.Response:
        async with self.client(read_timeout=self._timeout) as client:
            return await client.request(method, path, json=json, params=params, content=content, headers=headers)


def error_text(answer: httpx.Response) -> str:
    """The Azure error envelope's `code: message`, or the status line when the body is something else."""
    try:
        error = answer.json()["error"]
        return f"{error['code']}: {error['message']}"
    except (ValueError, KeyError, TypeError):
        return f"HTTP {answer.status_code}"
