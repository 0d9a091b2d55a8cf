"""What every project route checks before it does anything: token, api-version, project, body.

The order is the one callers should see: an unauthenticated call learns only that it is
unauthenticated; an authenticated one with a bad api-version learns which versions are supported.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import aiohttp
from fastapi import Query, Request

from dockyard.control_plane import ControlPlane
from dockyard.domain.definitions import WireShape
from dockyard.domain.errors import BadRequest, Forbidden, NotFound, PayloadTooLarge, Unauthorized
from dockyard.gateway.sandboxes import Sandboxes
from dockyard.identity.agents import AGENT_ROLE
from dockyard.identity.ownership import OPERATOR_SUBJECT, USER_IDENTITY_HEADER, Caller, delegated_user
from dockyard.identity.tokens import InvalidToken, Principal, TokenAuthority
from dockyard.models.catalog import Catalog
from dockyard.models.local import LocalModel
from dockyard.reconciler import Reconciler
from dockyard.runtime.base import Runtime
from dockyard.settings import Settings
from dockyard.store.code_bundles import CodeBundles
from dockyard.store.files import FileStore
from dockyard.store.registries import RegistryStore
from dockyard.store.sessions import SessionStore
from dockyard.store.state_stores import StateStores
from dockyard.store.stored_responses import StoredResponses
from dockyard.store.tool_responses import ToolResponseStore
from dockyard.store.traces import TraceStore
from dockyard.tools.base import ToolKind
from dockyard.tools.vector_search import VectorSearch

if TYPE_CHECKING:
    from dockyard.metrics import Metrics
    from dockyard.store.toolboxes import ToolboxStore
    from dockyard.tools.toolboxes import ToolboxServer


@dataclass
class Services:
    """What route handlers need, built once at start-up and kept on `app.state.services`.

    `http` is the one field set later, when the server starts: its connection pool belongs to the
    event loop that serves, which does not exist yet when the services are built.
    """

    settings: Settings
    control_plane: ControlPlane
    authority: TokenAuthority
    identity_secret: str
    registries: RegistryStore
    sessions: SessionStore
    sandboxes: Sandboxes
    runtime: Runtime | None = None
    reconciler: Reconciler | None = None
    # Deployments and connections: what inference calls resolve through (`catalog.resolve(project, name)`).
    catalog: Catalog | None = None
    # The supervised llama.cpp server; None with --no-local-model. See dockyard.models.local.
    local_model: LocalModel | None = None
    http: aiohttp.ClientSession | None = None
    # Code-based versions' zips and unpacked trees (dockyard.store.code_bundles).
    bundles: CodeBundles | None = None
    # Spans (traces.db) and the Prometheus counters: see dockyard.api.telemetry and dockyard.metrics.
    traces: TraceStore | None = None
    metrics: Metrics | None = None
    # Responses the tool loop made (previous_response_id, approvals): dockyard.store.tool_responses.
    tool_responses: ToolResponseStore | None = None
    # The platform tools the Responses tool loop and toolboxes run (dockyard.tools.kinds), by `type`.
    tool_kinds: dict[str, ToolKind] = field(default_factory=dict)
    # Responses agents keep through the project's storage API (api/storage.py), answered after their sandbox is gone.
    stored_responses: StoredResponses | None = None
    # State stores agents keep through the project (api/state_stores.py): Agent Framework's sessions and checkpoints.
    state_stores: StateStores | None = None
    # Uploaded files (/openai/v1/files) and vector stores with their ingestion and search (file_search).
    files: FileStore | None = None
    vector_search: VectorSearch | None = None
    # Toolboxes (dockyard.store.toolboxes) and the MCP server that serves them (made by create_app).
    toolboxes: ToolboxStore | None = None
    toolbox_server: ToolboxServer | None = None


def services(request: Request) -> Services:
    return request.app.state.services


def authenticate(request: Request) -> Principal:
    header = request.headers.get("authorization")
    if not header:
        raise Unauthorized(
            "The request has no bearer token. Authenticate with DefaultAzureCredential after "
            "`eval \"$(dockyard env)\"`, or send 'Authorization: Bearer <token>'.",
            code="MissingToken",
        )
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("The Authorization header must be 'Bearer <token>'.", code="InvalidAuthenticationScheme")
    try:
        principal = services(request).authority.verify(token.strip())
    except InvalidToken as exc:
        raise Unauthorized(exc.reason, code="InvalidToken") from None
    request.state.principal = principal
    return principal


def authenticate_operator(request: Request) -> Principal:
    """A valid token that is not an agent's own: managing agents is for people and their tools."""
    principal = authenticate(request)
    if principal.claims.get("dockyard_role") == AGENT_ROLE:
        raise Forbidden(
            "An agent's managed identity cannot manage agents. Use your own identity (DefaultAzureCredential "
            "after `eval \"$(dockyard env)\"`).",
            code="AgentIdentityNotAllowed",
        )
    return principal


def authenticate_caller(request: Request) -> Caller:
    """The token's principal, and the end user it delegates for (`x-ms-user-identity`), for ownership.

    Operator is the identity `dockyard env` hands out, never an agent's: see dockyard.identity.ownership.
    """
    principal = authenticate(request)
    return caller_of(principal, request.headers.get(USER_IDENTITY_HEADER))


def caller_of(principal: Principal, user_identity: str | None) -> Caller:
    role = principal.claims.get("dockyard_role")
    return Caller(
        subject=principal.subject,
        user=delegated_user(user_identity),
        operator=principal.subject == OPERATOR_SUBJECT and role != AGENT_ROLE,
        oid=str(principal.claims.get("oid") or principal.subject),
    )


def wire_shape(api_version: str | None = Query(None, alias="api-version")) -> WireShape:
    # A parameter, so the OpenAPI document shows it (dockyard.api.openapi states it required, as it is here).
    supported = ", ".join(WireShape.supported())
    if not api_version:
        raise BadRequest(
            f"The 'api-version' query parameter is required. Supported versions: {supported}.",
            code="MissingApiVersionParameter",
            param="api-version",
        )
    try:
        return WireShape(api_version)
    except ValueError:
        raise BadRequest(
            f"api-version {api_version!r} is not supported. Supported versions: {supported} "
            "(2025-11-15-preview is what azure-ai-projects 2.0.0b3 sends; v1 is what 2.x sends).",
            code="UnsupportedApiVersion",
            param="api-version",
        ) from None


def project(request: Request) -> str:
    name = request.path_params["project"]
    if name not in services(request).settings.projects:
        known = ", ".join(services(request).settings.projects)
        raise NotFound(
            f"Project {name!r} does not exist on this dockyard. Known projects: {known}. "
            "Use the AZURE_AI_PROJECT_ENDPOINT that `dockyard env` prints.",
            code="ProjectNotFound",
        )
    return name


def root_project(request: Request) -> str:
    """The host's root serves the default project (AzureOpenAI and LangChain given the host as endpoint)."""
    return services(request).settings.projects[0]


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refused with 413 as soon as it is known to be over `limit` (declared or streamed)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"The request body is larger than {limit} bytes.", code="RequestBodyTooLarge")
    raw = bytearray()
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > limit:
            raise PayloadTooLarge(f"The request body is larger than {limit} bytes.", code="RequestBodyTooLarge")
    return bytes(raw)


async def json_body(request: Request, limit: int | None = None) -> dict[str, Any]:
    raw = await read_body(request, limit or services(request).settings.max_request_bytes)
    return parse_json_object(raw)


def parse_json_object(raw: bytes, *, what: str = "The request body") -> dict[str, Any]:
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest(f"{what} is not valid JSON ({exc}).", code="InvalidRequestBody") from None
    except RecursionError:
        body = None  # deeper than the interpreter's stack: certainly past the bound below
    if body is None or not _within_depth(body, MAX_JSON_DEPTH):
        raise BadRequest(f"{what} is nested more than {MAX_JSON_DEPTH} levels deep.",
                         code="InvalidRequestBody")
    if not isinstance(body, dict):
        raise BadRequest(f"{what} must be a JSON object.", code="InvalidRequestBody")
    return body


# serde_json's bound. Bodies are later copied, compared and re-encoded by recursive code, so the parser's
# own limit (the interpreter's stack) is not enough: a body just under it would fail there instead.
MAX_JSON_DEPTH = 128


def _within_depth(value: object, limit: int) -> bool:
    """Whether no array or object in `value` is nested deeper than `limit`, walked without recursion."""
    pending: list[tuple[object, int]] = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > limit:
            return False
        pending.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
    return True
