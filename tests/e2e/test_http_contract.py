"""The HTTP contract under the SDKs: tokens, api-versions, error envelopes, request ids, bad input.

These use httpx directly because the point is what goes over the wire, including requests no SDK
would send (no token, a forged token, a wrong identity header, malformed JSON).
"""

from __future__ import annotations

import ssl
import time
from collections.abc import Iterator

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from support.process import DockyardProcess

pytestmark = pytest.mark.e2e

API_VERSION = {"api-version": "v1"}
BODY = {
    "definition": {
        "kind": "hosted",
        "container_configuration": {"image": "localhost:5000/echo:v1"},
        "protocol_versions": [{"protocol": "responses", "version": "2.0.0"}],
    }
}


@pytest.fixture(scope="module")
def env(dockyard: DockyardProcess) -> dict[str, str]:
    return dockyard.env()


@pytest.fixture(scope="module")
def http(env: dict[str, str]) -> Iterator[httpx.Client]:
    with httpx.Client(verify=ssl.create_default_context(cafile=env["REQUESTS_CA_BUNDLE"]), timeout=30) as client:
        yield client


def identity_token(http: httpx.Client, env: dict[str, str], resource: str = "https://ai.azure.com") -> str:
    answer = http.get(
        env["IDENTITY_ENDPOINT"],
        params={"api-version": "2019-08-01", "resource": resource},
        headers={"X-IDENTITY-HEADER": env["IDENTITY_HEADER"]},
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["token_type"] == "Bearer" and body["resource"] == resource.removesuffix("/.default")
    assert int(body["expires_on"]) > time.time() + 60
    return body["access_token"]


@pytest.fixture(scope="module")
def token(http: httpx.Client, env: dict[str, str]) -> str:
    return identity_token(http, env)


def agents_url(env: dict[str, str]) -> str:
    return env["AZURE_AI_PROJECT_ENDPOINT"] + "/agents"


def assert_envelope(answer: httpx.Response, status: int, code: str) -> dict[str, str]:
    assert answer.status_code == status, answer.text
    assert answer.headers["x-ms-request-id"]
    error = answer.json()["error"]
    assert error["code"] == code
    assert error["message"]
    return error


def test_identity_endpoint_refuses_a_wrong_or_missing_header(http: httpx.Client, env: dict[str, str]) -> None:
    for headers in ({}, {"X-IDENTITY-HEADER": "not-the-secret"}):
        answer = http.get(env["IDENTITY_ENDPOINT"], params={"api-version": "2019-08-01", "resource": "https://ai.azure.com"},
                          headers=headers)
        assert_envelope(answer, 401, "InvalidIdentityHeader")


def test_identity_endpoint_normalizes_default_scope(http: httpx.Client, env: dict[str, str]) -> None:
    identity_token(http, env, "https://ai.azure.com/.default")


@pytest.mark.parametrize("authorization", [None, "Bearer", "Basic dXNlcjpwYXNz", "Bearer not.a.jwt"])
def test_missing_or_malformed_tokens_are_401(http: httpx.Client, env: dict[str, str],
                                              authorization: str | None) -> None:
    headers = {"Authorization": authorization} if authorization else {}
    answer = http.get(agents_url(env), params=API_VERSION, headers=headers)
    assert answer.status_code == 401
    assert answer.headers["www-authenticate"].startswith("Bearer ")
    assert answer.json()["error"]["code"] in {"MissingToken", "InvalidAuthenticationScheme", "InvalidToken"}


def test_token_for_another_audience_is_401(http: httpx.Client, env: dict[str, str]) -> None:
    other = identity_token(http, env, "https://storage.azure.com")
    answer = http.get(agents_url(env), params=API_VERSION, headers={"Authorization": f"Bearer {other}"})
    error = assert_envelope(answer, 401, "InvalidToken")
    assert "audience" in error["message"]


def test_forged_and_expired_tokens_are_401(http: httpx.Client, env: dict[str, str], token: str) -> None:
    claims = jwt.decode(token, options={"verify_signature": False})
    forged = jwt.encode(claims, ec.generate_private_key(ec.SECP256R1()), algorithm="ES256")
    answer = http.get(agents_url(env), params=API_VERSION, headers={"Authorization": f"Bearer {forged}"})
    assert "signature" in assert_envelope(answer, 401, "InvalidToken")["message"]

    tampered = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    answer = http.get(agents_url(env), params=API_VERSION, headers={"Authorization": f"Bearer {tampered}"})
    assert_envelope(answer, 401, "InvalidToken")

    # An expired token signed with dockyard's own key (read from its home, as only the owner can).
    home_key = env["REQUESTS_CA_BUNDLE"].rsplit("/tls/", 1)[0] + "/token-signing-key.pem"
    from cryptography.hazmat.primitives import serialization

    key = serialization.load_pem_private_key(open(home_key, "rb").read(), password=None)
    now = int(time.time())
    expired = jwt.encode({**claims, "iat": now - 7200, "nbf": now - 7200, "exp": now - 3600}, key, algorithm="ES256")
    answer = http.get(agents_url(env), params=API_VERSION, headers={"Authorization": f"Bearer {expired}"})
    assert "expired" in assert_envelope(answer, 401, "InvalidToken")["message"]


def test_api_version_is_required_and_checked(http: httpx.Client, env: dict[str, str], token: str) -> None:
    auth = {"Authorization": f"Bearer {token}"}
    assert_envelope(http.get(agents_url(env), headers=auth), 400, "MissingApiVersionParameter")
    error = assert_envelope(http.get(agents_url(env), params={"api-version": "2024-01-01"}, headers=auth), 400,
                            "UnsupportedApiVersion")
    assert "2025-11-15-preview" in error["message"] and "v1" in error["message"]
    for version in ("v1", "2025-11-15-preview"):
        assert http.get(agents_url(env), params={"api-version": version}, headers=auth).status_code == 200


def test_request_ids(http: httpx.Client, env: dict[str, str], token: str) -> None:
    answer = http.get(agents_url(env), params=API_VERSION,
                      headers={"Authorization": f"Bearer {token}", "x-ms-client-request-id": "my-correlation-id"})
    assert answer.headers["x-ms-client-request-id"] == "my-correlation-id"
    first = answer.headers["x-ms-request-id"]
    second = http.get(agents_url(env), params=API_VERSION, headers={"Authorization": f"Bearer {token}"})
    assert second.headers["x-ms-request-id"] != first
    unknown = http.get(env["AZURE_AI_PROJECT_ENDPOINT"].split("/api/")[0] + "/nowhere")
    assert_envelope(unknown, 404, "NotFound")


def test_bad_bodies(http: httpx.Client, env: dict[str, str], token: str) -> None:
    url = agents_url(env) + "/body-checks/versions"
    auth = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    assert_envelope(http.post(url, params=API_VERSION, headers=auth, content=b"{not json"), 400, "InvalidRequestBody")
    assert_envelope(http.post(url, params=API_VERSION, headers=auth, content=b"[1, 2]"), 400, "InvalidRequestBody")
    assert_envelope(http.post(url, params=API_VERSION, headers=auth, json={}), 400, "InvalidRequestBody")
    big = b'{"definition": "' + b"x" * (2 * 1024 * 1024) + b'"}'
    assert_envelope(http.post(url, params=API_VERSION, headers=auth, content=big), 413, "RequestBodyTooLarge")
    prompt = {"definition": {"kind": "prompt", "model": "gpt-4o"}}
    assert_envelope(http.post(url, params=API_VERSION, headers=auth, json=prompt), 400, "UnsupportedAgentKind")


def test_each_caller_gets_its_own_wire_shape(http: httpx.Client, env: dict[str, str], token: str) -> None:
    auth = {"Authorization": f"Bearer {token}"}
    created = http.post(agents_url(env) + "/shapes/versions", params=API_VERSION, headers=auth, json=BODY)
    assert created.status_code == 200, created.text
    current = http.get(agents_url(env) + "/shapes/versions/1", params=API_VERSION, headers=auth).json()["definition"]
    legacy = http.get(agents_url(env) + "/shapes/versions/1", params={"api-version": "2025-11-15-preview"},
                      headers=auth).json()["definition"]
    assert current["container_configuration"] == {"image": "localhost:5000/echo:v1"}
    assert current["protocol_versions"] == [{"protocol": "responses", "version": "2.0.0"}]
    assert "image" not in current and "container_protocol_versions" not in current
    assert legacy["image"] == "localhost:5000/echo:v1"
    assert legacy["container_protocol_versions"] == [{"protocol": "responses", "version": "2.0.0"}]
    assert "container_configuration" not in legacy and "protocol_versions" not in legacy
    assert current["cpu"] == legacy["cpu"] == "1" and current["memory"] == legacy["memory"] == "2Gi"
