"""The agent protocols dockyard serves, at the version strings clients actually send.

The same protocol version is spelled differently by different tools: the hosted-agents guide and the
2.0.0b3 SDK samples say `v1`, `agent.yaml` manifests for the hosting adapters say `1.0.0` or `2.0.0`,
and some manifests say `1`. All of them mean a container speaking the protocol as Microsoft's hosting
adapter serves it, so all are accepted; anything else is refused up front, listing what is served.
"""

from __future__ import annotations

from dataclasses import dataclass

from dockyard.domain.errors import PROTOCOL_VERSION_NOT_SUPPORTED, BadRequest

# Every spelling seen in the SDKs' samples and tests, Microsoft's hosting-adapter manifests, the Azure
# Developer CLI's agents extension and agent-framework samples (2.0.0 is what new manifests default to;
# the adapters send `x-agent-foundry-call-id` only under 2.0.0). Docstring-only examples are not served.
SERVED_PROTOCOLS: dict[str, tuple[str, ...]] = {
    "responses": ("v1", "1", "1.0.0", "2.0.0"),
    "invocations": ("v1", "1", "1.0.0", "2.0.0"),
}


@dataclass(frozen=True)
class ProtocolVersion:
    protocol: str
    version: str

    def to_wire(self) -> dict[str, str]:
        return {"protocol": self.protocol, "version": self.version}


def served_summary() -> str:
    return "; ".join(f"{name} ({', '.join(versions)})" for name, versions in SERVED_PROTOCOLS.items())


def parse_protocol_versions(records: object, *, field: str) -> tuple[ProtocolVersion, ...]:
    if not isinstance(records, list) or not records:
        raise BadRequest(
            f"definition.{field} must be a non-empty list of {{protocol, version}} records, for example "
            '[{"protocol": "responses", "version": "v1"}].',
            code="InvalidProtocolVersions",
            param=f"definition.{field}",
        )
    parsed: list[ProtocolVersion] = []
    for record in records:
        if not isinstance(record, dict) or not isinstance(record.get("protocol"), str) or not isinstance(
            record.get("version"), str
        ):
            raise BadRequest(
                f"Each entry of definition.{field} needs a string 'protocol' and a string 'version'; got {record!r}.",
                code="InvalidProtocolVersions",
                param=f"definition.{field}",
            )
        protocol, version = record["protocol"], record["version"]
        served = SERVED_PROTOCOLS.get(protocol.lower())
        if served is None or version not in served:
            raise BadRequest(
                f"Protocol {protocol!r} version {version!r} is not supported. dockyard serves: {served_summary()}. "
                'Use, for example, {"protocol": "responses", "version": "v1"}.',
                code=PROTOCOL_VERSION_NOT_SUPPORTED,
                param=f"definition.{field}",
            )
        parsed.append(ProtocolVersion(protocol.lower(), version))
    return tuple(parsed)
