"""Calls to the local dockyard's project API with the standard library, for commands that must answer at once
(`dockyard status`, and `dockyard invoke` without --stream).

The 2.x SDK costs 1.3-2 s to import before it sends anything (azure-ai-projects pulls in openai's types), which
is most of what `dockyard status` took. Reading three lists does not need it: the same REST calls the SDK makes
(`GET /agents`, `/agents/{name}/versions`, `/agents/{name}/endpoint/sessions`, api-version v1, paged on
`last_id`), with a token from the same managed-identity endpoint `DefaultAzureCredential` asks, over TLS checked
against the same CA bundle; an invocation is the POST the openai client makes to the agent's endpoint.
`--target azure` still goes through the SDK: Entra sign-in is azure-identity's job.
"""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Mapping
from typing import Any

from dockyard.cli.output import EXIT_FAILED, EXIT_NOT_FOUND, EXIT_UNREACHABLE, fail

API_VERSION = "v1"
# What DefaultAzureCredential asks a managed-identity endpoint for when the SDK wants https://ai.azure.com/.default.
TOKEN_RESOURCE = "https://ai.azure.com"
IDENTITY_API_VERSION = "2019-08-01"
TIMEOUT_SECONDS = 300.0  # an invocation waits for the agent's answer (and a cold start before it)


class LocalProject:
    """GETs on one project of the dockyard `exports` point at (what `connect.local_exports` returns)."""

    def __init__(self, exports: Mapping[str, str]) -> None:
        self.endpoint = exports["AZURE_AI_PROJECT_ENDPOINT"].rstrip("/")
        self._identity = exports["IDENTITY_ENDPOINT"]
        self._secret = exports["IDENTITY_HEADER"]
        self._tls = ssl.create_default_context(cafile=exports["REQUESTS_CA_BUNDLE"])
        self._token: str | None = None

    def get(self, path: str, what: str | None = None, **params: str) -> Any:
        """GET `{endpoint}{path}` and its JSON; failures exit with the workflow commands' codes, `what` (else the
        request) first in the message."""
        return self._call("GET", path, None, params, what or f"GET {path}")

    def post(self, path: str, body: dict[str, Any], what: str, **params: str) -> tuple[Any, Mapping[str, str]]:
        """POST JSON to `{endpoint}{path}`: the answer's JSON (or text) and its headers."""
        headers: dict[str, str] = {}
        answer = self._call("POST", path, body, params, what, headers)
        return answer, headers

    def _call(self, method: str, path: str, body: dict[str, Any] | None, params: Mapping[str, str], what: str,
              headers_out: dict[str, str] | None = None) -> Any:
        query = urllib.parse.urlencode({**params, "api-version": API_VERSION})
        headers = {"Authorization": f"Bearer {self._bearer()}", "Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        request = urllib.request.Request(f"{self.endpoint}{path}?{query}", data=data, headers=headers, method=method)
        return self._send(request, what, headers_out)

    def pages(self, path: str) -> Iterator[dict[str, Any]]:
        """Every item of a `{object: list, data, last_id, has_more}` list, page after page."""
        after: str | None = None
        while True:
            page = self.get(path, limit="100", **({"after": after} if after else {}))
            yield from page.get("data") or []
            after = page.get("last_id")
            if not page.get("has_more") or not after:
                return

    def _bearer(self) -> str:
        if self._token is None:
            query = urllib.parse.urlencode({"api-version": IDENTITY_API_VERSION, "resource": TOKEN_RESOURCE})
            request = urllib.request.Request(f"{self._identity}?{query}", headers={"X-IDENTITY-HEADER": self._secret})
            self._token = str(self._send(request, "getting a token")["access_token"])
        return self._token

    def _send(self, request: urllib.request.Request, what: str, headers_out: dict[str, str] | None = None,
              timeout: float = TIMEOUT_SECONDS) -> Any:
        try:
            with urllib.request.urlopen(request, timeout=timeout, context=self._tls) as answer:
                if headers_out is not None:
                    headers_out.update({k.lower(): v for k, v in answer.headers.items()})
                text = answer.read().decode(errors="replace")
                try:
                    return json.loads(text)
                except ValueError:
                    return text
        except urllib.error.HTTPError as exc:
            message = _error_message(exc)
            code = {404: EXIT_NOT_FOUND, 401: EXIT_UNREACHABLE, 403: EXIT_UNREACHABLE}.get(exc.code, EXIT_FAILED)
            fail(f"{what}: {message}", code)
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            fail(f"{what}: could not reach {self.endpoint}: {reason}", EXIT_UNREACHABLE,
                 details="Is dockyard running from this home? Start it with `dockyard up`.")


def _error_message(exc: urllib.error.HTTPError) -> str:
    """`Code: message` from the Azure error envelope, else the HTTP status."""
    try:
        error = json.loads(exc.read()).get("error") or {}
    except (ValueError, AttributeError, OSError):
        error = {}
    if error.get("code") or error.get("message"):
        return f"{error.get('code') or 'Error'}: {error.get('message') or ''}".strip()
    return f"HTTP {exc.code} {exc.reason}"
