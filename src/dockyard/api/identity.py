"""The App Service managed-identity endpoint, which makes `DefaultAzureCredential()` work unchanged.

azure-identity, seeing IDENTITY_ENDPOINT and IDENTITY_HEADER, sends
`GET IDENTITY_ENDPOINT?api-version=2019-08-01&resource=https://ai.azure.com` with the secret in
`X-IDENTITY-HEADER`, and expects `{access_token, expires_on, resource, token_type}` back. The secret
is the only credential here, so it is compared in constant time and never logged.
"""

from __future__ import annotations

import hmac
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from dockyard.api.dependencies import services
from dockyard.domain.errors import DockyardError
from dockyard.identity.agents import AGENT_ROLE, agent_from_identity_header
from dockyard.identity.ownership import OPERATOR_SUBJECT, USER_ROLE, user_subject
from dockyard.settings import IDENTITY_PATH
from dockyard.wire_errors import error_response

router = APIRouter()

IDENTITY_API_VERSION = "2019-08-01"
LOCAL_SUBJECT = OPERATOR_SUBJECT


@router.get(IDENTITY_PATH, response_model=None)
def issue_token(request: Request) -> JSONResponse | dict[str, Any]:
    secret = request.headers.get("x-identity-header", "")
    master = services(request).identity_secret
    agent_uid = agent_from_identity_header(master, secret)
    if agent_uid is None and not hmac.compare_digest(secret.encode(), master.encode()):
        return error_response(
            401,
            "InvalidIdentityHeader",
            "The X-IDENTITY-HEADER value is missing or wrong. Set IDENTITY_HEADER from `dockyard env` "
            "for this dockyard's home.",
        )
    api_version = request.query_params.get("api-version")
    if api_version != IDENTITY_API_VERSION:
        return error_response(
            400, "UnsupportedApiVersion", f"The identity endpoint speaks api-version {IDENTITY_API_VERSION}."
        )
    resource = request.query_params.get("resource")
    if not resource:
        return error_response(400, "MissingResource", "Name the token's audience in the 'resource' query parameter.")
    # A named user: what a user-assigned identity is in App Service's protocol (azure-identity sends
    # `client_id`: DefaultAzureCredential(managed_identity_client_id=...) or AZURE_CLIENT_ID). A caller of
    # its own, with its own sessions and responses, never the operator. Only for the home's secret.
    client_id = request.query_params.get("client_id")
    if client_id is not None and agent_uid is not None:
        return error_response(400, "InvalidClientId", "An agent's identity is its own; it cannot name a user.")
    if client_id is not None:
        try:
            subject = user_subject(client_id)
        except DockyardError as exc:
            return error_response(400, exc.code, exc.message)
        token = services(request).authority.issue(subject, resource, extra_claims={"dockyard_role": USER_ROLE})
    elif agent_uid is None:
        token = services(request).authority.issue(LOCAL_SUBJECT, resource)
    else:
        token = services(request).authority.issue(
            f"agent:{agent_uid}", resource,
            extra_claims={"dockyard_role": AGENT_ROLE, "dockyard_version_uid": agent_uid},
        )
    return {
        "access_token": token.access_token,
        "expires_on": str(token.expires_on),
        "resource": token.resource,
        "token_type": "Bearer",
    }
