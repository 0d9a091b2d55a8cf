"""Hosted-agent definitions: two wire shapes in, one model stored, the caller's shape out.

The 2.0.0b3 SDK (api-version `2025-11-15-preview`) sends a hosted definition as
`{kind, image, container_protocol_versions, cpu, memory, tools, environment_variables}`; 2.x
(api-version `v1`) sends `{kind, cpu, memory, container_configuration: {image, registry_connection_id}
| code_configuration, protocol_versions, environment_variables, session_configuration, …}`.
Both describe the same thing, so both become one `HostedDefinition`, and each caller gets it back in
the shape its SDK deserializes. Fields dockyard does not interpret are kept verbatim in `options` so
nothing a caller sent is silently dropped.
"""

from __future__ import annotations

import copy
import enum
import re
from dataclasses import dataclass, field
from typing import Any

from dockyard.domain.code_runtimes import DEPENDENCY_RESOLUTIONS, PYTHON_RUNTIMES
from dockyard.domain.errors import BadRequest
from dockyard.domain.images import parse_image_reference
from dockyard.domain.protocols import ProtocolVersion, parse_protocol_versions
from dockyard.domain.resources import validate_cpu, validate_memory
from dockyard.domain.sessions import validate_session_configuration
from dockyard.domain.tools import validate_tools


class WireShape(enum.Enum):
    """How an api-version spells a hosted definition. The value is the api-version the SDK sends."""

    PREVIEW = "2025-11-15-preview"
    V1 = "v1"

    @classmethod
    def supported(cls) -> list[str]:
        return [shape.value for shape in cls]


# Keys each shape uses for the parts dockyard interprets; everything else lands in `options`.
_INTERPRETED = {
    "kind",
    "image",
    "container_protocol_versions",
    "protocol_versions",
    "container_configuration",
    "code_configuration",
    "cpu",
    "memory",
    "tools",
    "environment_variables",
}
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# Foundry states no limits here; these are dockyard's, far above what agents use and well inside what a
# process environment can carry (Linux refuses an exec whose environment passes a few megabytes).
MAX_ENVIRONMENT_VARIABLES = 1000
MAX_ENVIRONMENT_BYTES = 256 * 1024
# An entry point is a command line; these bound it far above any real one.
MAX_ENTRY_POINT_ARGS = 64
MAX_ENTRY_POINT_ARG_CHARS = 4096


@dataclass(frozen=True)
class HostedDefinition:
    protocols: tuple[ProtocolVersion, ...]
    cpu: str
    memory: str
    image: str | None = None
    registry_connection_id: str | None = None
    code_configuration: dict[str, Any] | None = None
    environment_variables: dict[str, str] = field(default_factory=dict)
    tools: list[dict[str, Any]] | None = None
    # Fields inside 2.x's container_configuration that dockyard does not interpret, kept for the way back.
    container_options: dict[str, Any] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)

    # -- wire ---------------------------------------------------------------------------------------

    @classmethod
    def from_wire(cls, wire: object) -> HostedDefinition:
        """Parse and validate a definition in either SDK shape."""
        if not isinstance(wire, dict):
            raise BadRequest("'definition' must be an object.", code="InvalidDefinition", param="definition")
        kind = wire.get("kind")
        if kind != "hosted":
            raise BadRequest(
                f"Agent kind {kind!r} is not supported: dockyard runs hosted agents only. "
                "Send a hosted definition (ImageBasedHostedAgentDefinition in 2.0.0b3, HostedAgentDefinition in 2.x).",
                code="UnsupportedAgentKind",
                param="definition.kind",
            )
        image, registry_connection_id = _image_from(wire)
        code_configuration = wire.get("code_configuration")
        if code_configuration is not None:
            code_configuration = validate_code_configuration(code_configuration)
        if (image is None) == (code_configuration is None):
            raise BadRequest(
                "A hosted definition needs exactly one of an image (`image`, or `container_configuration.image` "
                "in 2.x) or `code_configuration`.",
                code=("InvalidDefinition" if image is not None else "InvalidContainerImage"),
                param="definition.image",
            )
        if image is not None:
            parse_image_reference(image)
        validate_session_configuration(wire.get("session_configuration"))
        return cls(
            protocols=_protocols_from(wire),
            cpu=validate_cpu(wire.get("cpu")),
            memory=validate_memory(wire.get("memory")),
            image=image,
            registry_connection_id=registry_connection_id,
            code_configuration=code_configuration,
            environment_variables=_environment_from(wire.get("environment_variables")),
            tools=validate_tools(wire.get("tools")),
            container_options={
                k: v for k, v in (wire.get("container_configuration") or {}).items()
                if k not in ("image", "registry_connection_id")
            },
            options={k: v for k, v in wire.items() if k not in _INTERPRETED},
        )

    def to_wire(self, shape: WireShape) -> dict[str, Any]:
        """This definition as the SDK speaking `shape` expects to deserialize it."""
        wire: dict[str, Any] = {"kind": "hosted", "cpu": self.cpu, "memory": self.memory}
        protocols = [p.to_wire() for p in self.protocols]
        if shape is WireShape.PREVIEW:
            if self.image is not None:
                wire["image"] = self.image
            wire["container_protocol_versions"] = protocols
        else:
            if self.image is not None:
                container: dict[str, Any] = {"image": self.image}
                if self.registry_connection_id:
                    container["registry_connection_id"] = self.registry_connection_id
                container.update(copy.deepcopy(self.container_options))
                wire["container_configuration"] = container
            wire["protocol_versions"] = protocols
        if self.code_configuration is not None:
            wire["code_configuration"] = copy.deepcopy(self.code_configuration)
        wire["environment_variables"] = dict(self.environment_variables)
        if self.tools is not None:
            wire["tools"] = copy.deepcopy(self.tools)
        wire.update(copy.deepcopy(self.options))
        return wire

    # -- storage ------------------------------------------------------------------------------------

    def to_record(self) -> dict[str, Any]:
        """A JSON-able form for the store; stable across api-versions."""
        return {
            "protocols": [p.to_wire() for p in self.protocols],
            "cpu": self.cpu,
            "memory": self.memory,
            "image": self.image,
            "registry_connection_id": self.registry_connection_id,
            "code_configuration": self.code_configuration,
            "environment_variables": self.environment_variables,
            "tools": self.tools,
            "container_options": self.container_options,
            "options": self.options,
        }

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> HostedDefinition:
        return cls(
            protocols=tuple(ProtocolVersion(**p) for p in record["protocols"]),
            cpu=record["cpu"],
            memory=record["memory"],
            image=record.get("image"),
            registry_connection_id=record.get("registry_connection_id"),
            code_configuration=record.get("code_configuration"),
            environment_variables=dict(record.get("environment_variables") or {}),
            tools=record.get("tools"),
            container_options=dict(record.get("container_options") or {}),
            options=dict(record.get("options") or {}),
        )


def validate_code_configuration(value: object) -> dict[str, Any]:
    """2.x's `code_configuration`, checked: `runtime`, `entry_point`, `dependency_resolution` (default bundled).

    `content_hash` is the service's to set (from the upload's x-ms-code-zip-sha256 header), so one sent
    in a request is dropped here; fields dockyard does not interpret are kept for the way back.
    """
    param = "definition.code_configuration"
    if not isinstance(value, dict):
        raise BadRequest(
            f"{param} must be an object with runtime, entry_point and dependency_resolution.",
            code="InvalidDefinition", param=param,
        )
    runtime = value.get("runtime")
    if runtime not in PYTHON_RUNTIMES:
        raise BadRequest(
            f"{param}.runtime {runtime!r} is not supported: use one of {', '.join(PYTHON_RUNTIMES)}.",
            code="InvalidCodeConfiguration", param=f"{param}.runtime",
        )
    entry_point = value.get("entry_point")
    if (
        not isinstance(entry_point, list) or not entry_point
        or not all(isinstance(arg, str) and arg and "\x00" not in arg for arg in entry_point)
    ):
        raise BadRequest(
            f"{param}.entry_point must be a non-empty list of non-empty strings, the command that starts the "
            f"agent from the zip's root, e.g. ['python', 'main.py']; got {entry_point!r:.200}.",
            code="InvalidCodeConfiguration", param=f"{param}.entry_point",
        )
    if len(entry_point) > MAX_ENTRY_POINT_ARGS or any(len(arg) > MAX_ENTRY_POINT_ARG_CHARS for arg in entry_point):
        raise BadRequest(
            f"{param}.entry_point is too long: at most {MAX_ENTRY_POINT_ARGS} arguments of at most "
            f"{MAX_ENTRY_POINT_ARG_CHARS} characters each.",
            code="InvalidCodeConfiguration", param=f"{param}.entry_point",
        )
    resolution = value.get("dependency_resolution", "bundled")
    if resolution not in DEPENDENCY_RESOLUTIONS:
        raise BadRequest(
            f"{param}.dependency_resolution {resolution!r} is not supported: use 'bundled' (packages in the zip's "
            "packages/ folder) or 'remote_build' (dockyard installs requirements.txt).",
            code="InvalidCodeConfiguration", param=f"{param}.dependency_resolution",
        )
    checked = {k: copy.deepcopy(v) for k, v in value.items() if k != "content_hash"}
    checked.update(runtime=runtime, entry_point=list(entry_point), dependency_resolution=resolution)
    return checked


def _image_from(wire: dict[str, Any]) -> tuple[str | None, str | None]:
    flat = wire.get("image")
    container = wire.get("container_configuration")
    if container is not None and not isinstance(container, dict):
        raise BadRequest(
            "definition.container_configuration must be an object with 'image'.",
            code="InvalidContainerImage",
            param="definition.container_configuration",
        )
    nested = container.get("image") if container else None
    if flat is not None and nested is not None and flat != nested:
        raise BadRequest(
            f"definition.image {flat!r} and definition.container_configuration.image {nested!r} disagree; send one.",
            code="InvalidContainerImage",
            param="definition.image",
        )
    image = flat if flat is not None else nested
    if image is not None and not isinstance(image, str):
        raise BadRequest(f"definition.image must be a string; got {image!r}.", code="InvalidContainerImage")
    connection = container.get("registry_connection_id") if container else None
    if connection is not None and not isinstance(connection, str):
        raise BadRequest(
            "definition.container_configuration.registry_connection_id must be a string.",
            code="InvalidDefinition",
            param="definition.container_configuration.registry_connection_id",
        )
    return image, connection


def _protocols_from(wire: dict[str, Any]) -> tuple[ProtocolVersion, ...]:
    legacy = wire.get("container_protocol_versions")
    current = wire.get("protocol_versions")
    if legacy is not None and current is not None and legacy != current:
        raise BadRequest(
            "definition.container_protocol_versions and definition.protocol_versions disagree; send one.",
            code="InvalidProtocolVersions",
            param="definition.protocol_versions",
        )
    if current is not None:
        return parse_protocol_versions(current, field="protocol_versions")
    return parse_protocol_versions(legacy, field="container_protocol_versions")


def _environment_from(value: object) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise BadRequest(
            "definition.environment_variables must be an object mapping names to string values.",
            code="InvalidEnvironmentVariables",
            param="definition.environment_variables",
        )
    if len(value) > MAX_ENVIRONMENT_VARIABLES:
        raise BadRequest(
            f"definition.environment_variables has {len(value)} variables; at most {MAX_ENVIRONMENT_VARIABLES} "
            "are allowed. Put bulk configuration in a file the agent reads instead.",
            code="InvalidEnvironmentVariables",
            param="definition.environment_variables",
        )
    total = 0
    for name, item in value.items():
        if not isinstance(name, str) or not _ENV_NAME.fullmatch(name):
            raise BadRequest(
                f"Environment variable name {name!r} is not valid: use letters, digits and underscores, "
                "not starting with a digit.",
                code="InvalidEnvironmentVariables",
                param="definition.environment_variables",
            )
        if not isinstance(item, str):
            raise BadRequest(
                f"Environment variable {name!r} must have a string value; got {type(item).__name__}. "
                "Quote numbers and booleans.",
                code="InvalidEnvironmentVariables",
                param="definition.environment_variables",
            )
        if "\x00" in item:
            # No process environment can hold a NUL: the sandbox would fail to start, over and over.
            raise BadRequest(
                f"Environment variable {name!r} contains a NUL character, which no process environment can hold.",
                code="InvalidEnvironmentVariables",
                param="definition.environment_variables",
            )
        total += len(name) + len(item.encode("utf-8", "surrogatepass")) + 2
    if total > MAX_ENVIRONMENT_BYTES:
        raise BadRequest(
            f"definition.environment_variables take {total} bytes; at most {MAX_ENVIRONMENT_BYTES} are allowed.",
            code="InvalidEnvironmentVariables",
            param="definition.environment_variables",
        )
    return dict(value)
