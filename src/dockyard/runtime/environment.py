"""The environment a hosted agent's container gets, as Foundry gives it (DESIGN.md §3).

The definition's `environment_variables` come first; the platform's names (`PORT`, `FOUNDRY_*`, the
identity pair) are the platform's and win, as in Foundry, where they are reserved. The container
reaches dockyard at the engine's host address, with its own managed identity scoped to its version.

`${{connections.NAME.credentials.FIELD}}`, `${{connections.NAME.target}}` and
`${{connections.NAME.metadata.KEY}}` in the definition's values are resolved here, each time a sandbox
starts, from the project's connections: the version keeps the reference, never the secret, and a key
changed with `dockyard connection` reaches the next sandbox. A reference to a connection that does not
exist fails the start (the version fails with ConnectionNotFound and says how to add it).

No traffic leaves the machine unless the agent is configured to send it: the Azure Monitor exporter
in Microsoft's adapters phones home ("statsbeat") unless APPLICATIONINSIGHTS_STATSBEAT_DISABLED_ALL is
set, so dockyard sets it (a definition may still set it otherwise).

Traces: the adapter exports OpenTelemetry to dockyard (`otlp_environment`, docs/observability.md), which
also keeps its console exporters from dumping every record into the container's output. Always: a
version that names its own collector (`OTEL_EXPORTER_OTLP_ENDPOINT` and friends) has dockyard forward
what it receives there (api/telemetry.py), so both see the spans and its collector's headers stay in
dockyard.

`FOUNDRY_HOSTING_ENVIRONMENT` is "1", as Foundry sets it in every sandbox, whenever the sandbox can reach
dockyard: Microsoft's responses adapter then keeps responses and history in the project's storage
(api/storage.py) and Agent Framework's hosting keeps agent sessions, approvals and checkpoints in its state
stores (api/state_stores.py), so both outlive the session. A definition may set it to "" to keep them in the
sandbox (docs/response-storage.md). Of the other things the adapters switch on it (azure-ai-agentserver-core
2.2 and 2.3b2, -responses 2.3 and 2.4b1): resilient tasks (opt-in) would go to a hosted task API dockyard
does not serve, so `AGENTSERVER_TASKS_BACKEND=local` keeps them in files under `AGENTSERVER_STATE_ROOT` (a
definition may say otherwise); A365 tracing needs a variable of its own; `FOUNDRY_AGENT_SESSION_GUID`'s check
applies only when that is set, which it is not.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from dockyard.domain.deployments import CONNECTION_NOT_FOUND
from dockyard.domain.errors import NotFound
from dockyard.identity.agents import agent_identity_header
from dockyard.models.deployments import ProjectConnection, resolve_references
from dockyard.settings import IDENTITY_PATH
from dockyard.store.agents import DesiredVersion

# (project, connection name) -> the connection, or NotFound (code ConnectionNotFound).
ConnectionLookup = Callable[[str, str], ProjectConnection]

AGENT_PORT = 8088
HOSTING_ENVIRONMENT = "FOUNDRY_HOSTING_ENVIRONMENT"
SESSION_STATE_PATH = "/session"


@dataclass(frozen=True)
class PlatformEnvironment:
    # How containers reach dockyard, e.g. "https://10.88.0.1:8443"; None when they cannot.
    base_url: str | None
    identity_secret: str
    # The project's connections, for `${{connections.…}}` references; None resolves none (each one fails).
    connections: ConnectionLookup | None = None

    def for_version(self, desired: DesiredVersion, session_id: str = "") -> dict[str, str]:
        version = desired.version
        environment = {"APPLICATIONINSIGHTS_STATSBEAT_DISABLED_ALL": "true", "AGENTSERVER_TASKS_BACKEND": "local"}
        if self.base_url is not None:
            environment[HOSTING_ENVIRONMENT] = "1"  # the project's storage is reachable: use it, as in Foundry
        environment.update(resolve_references(version.definition.environment_variables,
                                              lambda name: self._connection(desired.project, name)))
        environment.update({
            "PORT": str(AGENT_PORT),
            "FOUNDRY_AGENT_NAME": version.agent_name,
            "FOUNDRY_AGENT_VERSION": version.version,
            "FOUNDRY_AGENT_ID": version.id,
            "AGENTSERVER_STATE_ROOT": "/tmp/agentserver",
        })
        if session_id:
            # A session's state outlives its container: it sits on the session's volume.
            environment["FOUNDRY_AGENT_SESSION_ID"] = session_id
            environment["AGENTSERVER_STATE_ROOT"] = f"{SESSION_STATE_PATH}/agentserver"
        if self.base_url is not None:
            environment.update({
                "FOUNDRY_PROJECT_ENDPOINT": f"{self.base_url}/api/projects/{desired.project}",
                "IDENTITY_ENDPOINT": f"{self.base_url}{IDENTITY_PATH}",
                "IDENTITY_HEADER": agent_identity_header(self.identity_secret, desired.uid),
            })
            environment.update(otlp_environment(self.base_url, agent_identity_header(self.identity_secret,
                                                                                     desired.uid),
                                                environment, session_id))
            for name in COLLECTOR_FILES:
                environment.pop(name, None)  # the version's collector's TLS files, not dockyard's
        return environment

    def _connection(self, project: str, name: str) -> ProjectConnection:
        if self.connections is None:
            raise NotFound(f"Connection {name!r} cannot be read: this dockyard has no connections store.",
                           code=CONNECTION_NOT_FOUND)
        return self.connections(project, name)


SIGNALS = ("traces", "metrics", "logs")
# Paths inside the sandbox for the version's own collector: dockyard forwards to it, the sandbox does not.
COLLECTOR_FILES = tuple(f"OTEL_EXPORTER_OTLP{part}_{name}" for part in ("", *(f"_{s.upper()}" for s in SIGNALS))
                        for name in ("CERTIFICATE", "CLIENT_KEY", "CLIENT_CERTIFICATE"))


def otlp_environment(base_url: str, identity_header: str, environment: dict[str, str],
                     session_id: str) -> dict[str, str]:
    """OTLP export to dockyard (api/telemetry.py), as Microsoft's adapter reads it: the endpoint (it appends
    /v1/traces), http/protobuf, and the sandbox's identity as the exporter's header. Without an endpoint the
    adapter dumps every span to the console instead, hundreds of lines per request.

    A version's own per-signal settings (`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`, `…_HEADERS`, `…_PROTOCOL`) would
    win over these in the exporter, so each one it sets is pointed at dockyard too; dockyard forwards to them."""
    exports = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": base_url,
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        "OTEL_EXPORTER_OTLP_HEADERS": f"x-identity-header={identity_header}",
    }
    for signal in SIGNALS:
        prefix = f"OTEL_EXPORTER_OTLP_{signal.upper()}"
        for name, value in ((f"{prefix}_ENDPOINT", f"{base_url}/v1/{signal}"), (f"{prefix}_PROTOCOL", "http/protobuf"),
                            (f"{prefix}_HEADERS", exports["OTEL_EXPORTER_OTLP_HEADERS"])):
            if name in environment:
                exports[name] = value
    if session_id:
        # On every span's resource, so spans the adapter does not tag with the session still say it.
        own = environment.get("OTEL_RESOURCE_ATTRIBUTES", "")
        exports["OTEL_RESOURCE_ATTRIBUTES"] = f"{own},session.id={session_id}" if own else f"session.id={session_id}"
    return exports
