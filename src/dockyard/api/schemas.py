"""The JSON bodies dockyard's routes take and answer, as pydantic models: one source for checks and docs.

Each request model is a gate the handler runs its parsed body through (`validated`) before the domain
sees it, and the schema the OpenAPI document shows for that route (`json_request`). The gate checks JSON
types and simple bounds everywhere in a body; the domain still checks meaning (quantities, image
references, protocol versions) and keeps its own messages. Models allow extra fields wherever Foundry
does, and the handlers go on with the body as sent (never a re-serialised model), so nothing a caller
sent is dropped or coerced. Both SDK generations' definition shapes are one model (see
dockyard.domain.definitions.WireShape): 2.0.0b3's top-level `image` and `container_protocol_versions`,
2.x's `container_configuration`, `code_configuration` and `protocol_versions`.

A failed check is the Azure 400 envelope naming the field's path, with the code the domain uses for
that field (InvalidEnvironmentVariables, InvalidTool, …), so a caller meets one code per mistake
whichever layer noticed it first. Response models document answers; they are not applied to them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any, Literal

from fastapi import Query, Request
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from dockyard.api.dependencies import json_body
from dockyard.domain.agents import MAX_DESCRIPTION, MAX_METADATA_KEY, MAX_METADATA_PAIRS, MAX_METADATA_VALUE
from dockyard.domain.code_runtimes import DEPENDENCY_RESOLUTIONS, PYTHON_RUNTIMES
from dockyard.domain.definitions import (
    MAX_ENTRY_POINT_ARG_CHARS,
    MAX_ENTRY_POINT_ARGS,
    MAX_ENVIRONMENT_VARIABLES,
    WireShape,
)
from dockyard.domain.errors import BadRequest
from dockyard.domain.names import MAX_AGENT_NAME
from dockyard.domain.paging import DEFAULT_LIMIT, MAX_LIMIT
from dockyard.domain.protocols import SERVED_PROTOCOLS
from dockyard.domain.sessions import IDLE_TIMEOUT_MAX, LOCAL_IDLE_TIMEOUT_MIN
from dockyard.domain.tools import MAX_TOOLS

# ---- path and query parameters -----------------------------------------------------------------------------

AGENT_NAME_PATTERN = r"^[A-Za-z]([A-Za-z0-9-]*[A-Za-z0-9])?$"
SESSION_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"
VERSION_PATTERN = r"^[1-9][0-9]{0,18}$"

# Path parameters are plain strings to FastAPI (a name that cannot exist is Foundry's 404 AgentNotFound, not a
# generic 400); the document states their patterns (dockyard.api.openapi, by parameter name).
PATH_EXAMPLES = {"agent_name": "my-hosted-agent", "agent_version": "1"}
PATH_PATTERNS = {
    "agent_name": AGENT_NAME_PATTERN,
    "agent_version": VERSION_PATTERN,
    "session_id": SESSION_ID_PATTERN,
    "invocation_id": r"^[A-Za-z0-9\-_.:]{1,256}$",
}
# Query parameters state their bounds; the handlers refuse a value out of them with the domain's code
# (InvalidPaging), so FastAPI is not told to refuse them first with a generic one.
Limit = Annotated[int | None, Query(description=f"Items per page, 1 to {MAX_LIMIT} (default {DEFAULT_LIMIT}).",
                                    json_schema_extra={"minimum": 1, "maximum": MAX_LIMIT})]
Order = Annotated[str | None, Query(description="Order by creation: 'desc' (default) or 'asc'.",
                                    json_schema_extra={"enum": ["asc", "desc"]})]
After = Annotated[str | None, Query(description="The `last_id` of the previous page.")]
Before = Annotated[str | None, Query(description="Stop before this id.")]
API_VERSION_DESCRIPTION = ("2025-11-15-preview (what azure-ai-projects 2.0.0b3 sends) or v1 (what 2.x sends); "
                           "answers use that SDK's shapes.")
API_VERSIONS = WireShape.supported()


# ---- request bodies -----------------------------------------------------------------------------------------


class _Open(BaseModel):
    """JSON as it is (no "1" read as 1), other fields allowed: Foundry's objects grow."""

    model_config = ConfigDict(extra="allow", strict=True)


class ProtocolVersionRecord(_Open):
    protocol: str = Field(json_schema_extra={"enum": list(SERVED_PROTOCOLS)})
    version: str = Field(json_schema_extra={"enum": list(SERVED_PROTOCOLS["responses"])})


class ContainerConfiguration(_Open):
    """2.x: the image and the registry connection that pulls it."""

    image: str | None = None
    registry_connection_id: str | None = None


class CodeConfiguration(_Open):
    """2.x code-based versions (sent in create_version_from_code's `metadata` part)."""

    runtime: str = Field(json_schema_extra={"enum": list(PYTHON_RUNTIMES)})
    entry_point: list[Annotated[str, StringConstraints(min_length=1, max_length=MAX_ENTRY_POINT_ARG_CHARS)]] = Field(
        min_length=1, max_length=MAX_ENTRY_POINT_ARGS)
    dependency_resolution: str | None = Field(None, json_schema_extra={"enum": list(DEPENDENCY_RESOLUTIONS)})


class SessionConfiguration(_Open):
    idle_timeout_seconds: int | None = Field(
        None, ge=LOCAL_IDLE_TIMEOUT_MIN, le=IDLE_TIMEOUT_MAX,
        description="Seconds without a request before a session's sandbox is released (Foundry: 120 to 14400).")


class Tool(_Open):
    type: str = Field(min_length=1, description="code_interpreter, file_search, mcp, …")


# cpu and memory are Kubernetes quantities; numbers are read as cores or bytes, as the domain reads them.
Quantity = str | int | float


class HostedDefinition(_Open):
    """A `kind: hosted` definition in either SDK's shape."""

    kind: str = Field(json_schema_extra={"enum": ["hosted"]})
    image: str | None = Field(None, description="2.0.0b3: the image (2.x: container_configuration.image).")
    container_protocol_versions: list[ProtocolVersionRecord] | None = Field(None, min_length=1,
                                                                            description="2.0.0b3's protocol_versions.")
    protocol_versions: list[ProtocolVersionRecord] | None = Field(None, min_length=1)
    container_configuration: ContainerConfiguration | None = None
    code_configuration: CodeConfiguration | None = None
    cpu: Quantity | None = Field(None, description="0.5 to 4 cores (default \"1\"); \"500m\" works.")
    memory: Quantity | None = Field(None, description="1Gi to 8Gi (default \"2Gi\").")
    tools: list[Tool] | None = Field(None, max_length=MAX_TOOLS)
    environment_variables: dict[str, str] | None = Field(None, max_length=MAX_ENVIRONMENT_VARIABLES)
    session_configuration: SessionConfiguration | None = None


Metadata = dict[Annotated[str, StringConstraints(max_length=MAX_METADATA_KEY)],
                Annotated[str, StringConstraints(max_length=MAX_METADATA_VALUE)]]


class CreateVersionRequest(_Open):
    """`create_version` (JSON), `update` (2.0.0b3) and create_version_from_code's `metadata` part."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"definition": {
        "kind": "hosted", "container_configuration": {"image": "myregistry.azurecr.io/my-agent:v1"},
        "protocol_versions": [{"protocol": "responses", "version": "v1"}], "cpu": "1", "memory": "2Gi"},
        "description": "An example", "metadata": {"team": "agents"}}]})

    definition: HostedDefinition
    description: str | None = Field(None, max_length=MAX_DESCRIPTION)
    metadata: Metadata | None = Field(None, max_length=MAX_METADATA_PAIRS)


class CreateAgentRequest(CreateVersionRequest):
    """2.0.0b3's `agents.create(name=…, definition=…)`."""

    name: str = Field(max_length=MAX_AGENT_NAME, pattern=AGENT_NAME_PATTERN)


class VersionIndicator(_Open):
    type: str | None = Field(None, json_schema_extra={"enum": ["version_ref"]})
    agent_version: str | None = None


class CreateSessionRequest(_Open):
    """2.x `create_session`: an optional id of the caller's choosing, an optional pinned version."""

    agent_session_id: str | None = Field(None, pattern=SESSION_ID_PATTERN)
    version_indicator: VersionIndicator | None = None


class VersionSelectionRule(_Open):
    type: str = Field(json_schema_extra={"enum": ["FixedRatio"]})
    agent_version: str
    traffic_percentage: int | float = Field(ge=0, le=100)


class VersionSelector(_Open):
    version_selection_rules: list[VersionSelectionRule] = Field(min_length=1)


class AgentEndpoint(_Open):
    version_selector: VersionSelector | None = None


class UpdateAgentDetailsRequest(_Open):
    """2.x `update_details`: the traffic split between versions."""

    agent_endpoint: AgentEndpoint | None = None


class AgentReference(_Open):
    type: str | None = Field(None, json_schema_extra={"enum": ["agent_reference"]})
    name: str | None = None
    version: str | None = None


class CreateResponseRequest(_Open):
    """OpenAI's Responses create, as dockyard reads it: the agent it names (or a model), the session, the
    response it continues. Everything else goes to the agent or the model as it was sent."""

    agent_reference: AgentReference | None = Field(None, description="2.x: the agent to call.")
    agent: AgentReference | None = Field(None, description="2.0.0b3: the agent to call.")
    model: str | None = Field(None, description="A model deployment, when no agent is named.")
    agent_session_id: str | None = Field(None, pattern=SESSION_ID_PATTERN)
    previous_response_id: str | None = None
    stream: bool | None = None
    input: str | list[Any] | None = None


class InferenceRequest(_Open):
    """Chat Completions, Completions and Embeddings bodies: relayed as sent; `model` names the deployment
    (the Azure OpenAI deployment paths name it in the path instead)."""

    model: str | None = None


# ---- answers ------------------------------------------------------------------------------------------------


class ErrorDetail(BaseModel):
    model_config = ConfigDict(extra="allow")
    code: str
    message: str
    param: str | None = None


class ErrorResponse(BaseModel):
    """Azure's error envelope: every 4xx and 5xx dockyard answers."""

    error: ErrorDetail


class VersionError(BaseModel):
    code: str
    message: str


class AgentVersionObject(BaseModel):
    model_config = ConfigDict(extra="allow")
    object: Literal["agent.version"]
    id: str
    name: str
    version: str
    description: str | None
    created_at: int
    metadata: dict[str, str]
    definition: dict[str, Any]
    status: Literal["creating", "active", "failed", "deleting", "deleted"]
    error: VersionError | None = None


class AgentVersions(BaseModel):
    latest: AgentVersionObject


class AgentObject(BaseModel):
    model_config = ConfigDict(extra="allow")
    object: Literal["agent"]
    id: str
    name: str
    versions: AgentVersions
    state: Literal["enabled", "disabled"] | None = Field(None, description="api-version v1 only.")


class _List(BaseModel):
    object: Literal["list"]
    first_id: str | None
    last_id: str | None
    has_more: bool


class AgentList(_List):
    data: list[AgentObject]


class AgentVersionList(_List):
    data: list[AgentVersionObject]


class AgentDeleted(BaseModel):
    object: Literal["agent.deleted"]
    name: str
    deleted: bool


class AgentVersionDeleted(BaseModel):
    object: Literal["agent.version.deleted"]
    name: str
    version: str
    deleted: bool


class VersionRef(BaseModel):
    type: Literal["version_ref"]
    agent_version: str


class SessionObject(BaseModel):
    model_config = ConfigDict(extra="allow")
    object: Literal["agent.session"]
    agent_session_id: str
    version_indicator: VersionRef
    status: str
    created_at: int
    last_accessed_at: int
    expires_at: int
    stopped_at: int | None = None


class SessionList(_List):
    data: list[SessionObject]


class SessionFileEntry(BaseModel):
    name: str
    path: str
    size: int
    is_directory: bool
    is_dir: bool
    modified_time: Any


class SessionFileList(BaseModel):
    object: Literal["list"]
    path: str
    entries: list[SessionFileEntry]
    first_id: str | None
    last_id: str | None
    has_more: bool


class SessionFileWritten(BaseModel):
    path: str
    bytes_written: int


class OpenAPIDocument(BaseModel):
    model_config = ConfigDict(extra="allow")
    openapi: str
    info: dict[str, Any]
    paths: dict[str, Any]


# ---- checking a body ----------------------------------------------------------------------------------------

# The code a mistake at a path gets: the domain's for that field, so either layer answers alike. The longest
# matching prefix wins; a field missing from the body itself is InvalidRequestBody.
_CODES = {
    "definition": "InvalidDefinition",
    "definition.kind": "UnsupportedAgentKind",
    "definition.image": "InvalidContainerImage",
    "definition.container_configuration": "InvalidContainerImage",
    "definition.container_configuration.registry_connection_id": "InvalidDefinition",
    "definition.code_configuration": "InvalidCodeConfiguration",
    "definition.container_protocol_versions": "InvalidProtocolVersions",
    "definition.protocol_versions": "InvalidProtocolVersions",
    "definition.cpu": "InvalidCpu",
    "definition.memory": "InvalidMemory",
    "definition.tools": "InvalidTool",
    "definition.environment_variables": "InvalidEnvironmentVariables",
    "definition.session_configuration": "InvalidSessionConfiguration",
    "description": "InvalidDescription",
    "metadata": "InvalidMetadata",
    "name": "InvalidAgentName",
    "agent_session_id": "InvalidSessionId",
    "agent_reference": "InvalidAgentReference",
    "agent": "InvalidAgentReference",
    "agent_endpoint": "InvalidAgentEndpoint",
    "agent_endpoint.version_selector": "InvalidVersionSelector",
}
_SHOWN_ERRORS = 3


def validated(model: type[BaseModel], body: dict[str, Any]) -> dict[str, Any]:
    """`body` as it was sent, once `model` accepts it; otherwise a 400 naming each wrong field's path."""
    try:
        model.model_validate(body)
    except ValidationError as exc:
        raise _refusal(exc, body) from None
    return body


def body_of(model: type[BaseModel]) -> Callable[[Request], Awaitable[dict[str, Any]]]:
    """A dependency: the request's JSON object (size and depth bounded first), checked against `model`."""
    async def read(request: Request) -> dict[str, Any]:
        return validated(model, await json_body(request))

    return read


def _refusal(exc: ValidationError, body: dict[str, Any]) -> BadRequest:
    errors = exc.errors(include_url=False)
    paths = [_path_in(body, error["loc"], missing=error["type"] == "missing") for error in errors]
    # One line per field: a value that fits no member of a union fails once for each ("a valid string",
    # "a valid integer"), which reads best as one sentence.
    by_field: dict[str, list[str]] = {}
    for path, error in zip(paths, errors, strict=True):
        by_field.setdefault(_dotted(path) or "the body", []).append(error["msg"])
    problems = [f"{where}: {' or '.join(messages)}" for where, messages in by_field.items()]
    more = len(problems) - _SHOWN_ERRORS
    message = ("The request body is not valid: " + "; ".join(problems[:_SHOWN_ERRORS])
               + (f"; and {more} more" if more > 0 else "") + ".")
    first = paths[0]
    missing_at_top = errors[0]["type"] == "missing" and len(first) == 1
    code = "InvalidRequestBody" if missing_at_top else _code_for(first)
    return BadRequest(message, code=code, param=_dotted(first) or None)


def _path_in(body: Any, loc: tuple[int | str, ...], *, missing: bool) -> list[int | str]:
    """The error's location as a path through the body: pydantic's own steps (which member of a union was
    tried: `str`, `int`, …) dropped, the missing field kept."""
    path: list[int | str] = []
    current = body
    for position, step in enumerate(loc):
        if isinstance(current, dict) and step in current:
            current = current[step]
            path.append(step)
        elif isinstance(current, list) and isinstance(step, int) and 0 <= step < len(current):
            current = current[step]
            path.append(step)
        elif missing and position == len(loc) - 1:
            path.append(step)
    return path


def _dotted(path: list[int | str]) -> str:
    text = ""
    for step in path:
        text += f"[{step}]" if isinstance(step, int) else (f".{step}" if text else step)
    return text


def _code_for(path: list[int | str]) -> str:
    steps = [str(step) for step in path if not isinstance(step, int)]
    while steps:
        code = _CODES.get(".".join(steps))
        if code is not None:
            return code
        steps.pop()
    return "InvalidRequestBody"


# ---- declaring a body to the OpenAPI document ---------------------------------------------------------------

REQUEST_MODELS: list[type[BaseModel]] = []


def schema_ref(model: type[BaseModel]) -> dict[str, str]:
    if model not in REQUEST_MODELS:
        REQUEST_MODELS.append(model)
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def json_request(model: type[BaseModel], *, required: bool = True,
                 also: dict[str, Any] | None = None) -> dict[str, Any]:
    """A route's `openapi_extra`: its JSON body is `model` (its schema joins the document's components);
    `also` adds other media types the route takes (a multipart upload beside the JSON create)."""
    content: dict[str, Any] = {"application/json": {"schema": schema_ref(model)}, **(also or {})}
    return {"requestBody": {"required": required, "content": content}}


def raw_request(media_type: str, description: str, *, required: bool = True) -> dict[str, Any]:
    """A route's `openapi_extra` for a body dockyard relays or stores without reading it as JSON."""
    schema: dict[str, Any] = {} if media_type == "*/*" else {"type": "string", "format": "binary"}
    content = {media_type: {"schema": schema}}
    return {"requestBody": {"required": required, "description": description, "content": content}}


def answers(model: type[BaseModel] | None = None, *, status: int = 200, description: str = "OK",
            media_type: str | None = None) -> dict[int | str, dict[str, Any]]:
    """A route's `responses`: its success answer (a model, or a media type such as SSE or a zip)."""
    if model is not None:
        return {status: {"model": model, "description": description}}
    if media_type is None:
        return {status: {"description": description}}
    return {status: {"description": description, "content": {media_type: {"schema": {"type": "string"}}}}}
