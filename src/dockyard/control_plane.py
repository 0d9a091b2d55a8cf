"""The control plane: Foundry's rules for agents and versions, applied before anything is stored.

Routes hand it plain data; it validates with the domain and records desired state in the store. It
knows nothing of HTTP or wire shapes, so the same calls serve the API, the CLI and tests.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from dockyard.domain import code_archives
from dockyard.domain.agents import Agent, AgentVersion, VersionStatus, validate_description, validate_metadata
from dockyard.domain.definitions import HostedDefinition
from dockyard.domain.errors import CAPABILITY_HOST_NOT_FOUND, BadRequest, Conflict, NotFound
from dockyard.domain.names import validate_agent_name
from dockyard.domain.paging import Page, PageRequest
from dockyard.domain.sessions import SessionStatus
from dockyard.store.agents import AgentStore
from dockyard.store.code_bundles import CodeBundles, Incoming
from dockyard.store.sessions import SessionStore


class ControlPlane:
    def __init__(
        self, store: AgentStore, *, capability_host: bool = True, on_change: Callable[[], None] = lambda: None,
        sessions: SessionStore | None = None, bundles: CodeBundles | None = None,
    ) -> None:
        self.store = store
        self.sessions = sessions
        # Where code-based versions' zips live; None refuses create_version_from_code.
        self.bundles = bundles
        self.capability_host = capability_host
        # Called after desired state changes, so the reconciler acts now rather than at its next tick.
        self.on_change = on_change

    def check_can_create(self, agent_name: str) -> None:
        """What a create refuses before reading its body (an upload can be 250 MB)."""
        validate_agent_name(agent_name)
        if not self.capability_host:
            raise BadRequest(
                "This account has no capability host, so hosted agents cannot be created. In Foundry, create an "
                "account-level capability host with enablePublicHostingEnvironment=true; on dockyard, start it "
                "without --no-capability-host.",
                code=CAPABILITY_HOST_NOT_FOUND,
            )

    def create_version(self, project: str, agent_name: str, body: dict[str, Any]) -> AgentVersion:
        self.check_can_create(agent_name)
        definition = _definition_of(body)
        if definition.code_configuration is not None:
            raise BadRequest(
                "A code-based version (definition.code_configuration) needs its code: upload it with "
                "client.agents.create_version_from_code(agent_name, definition=..., code=open('agent.zip', 'rb')), "
                "which sends the definition and the zip as multipart/form-data.",
                code="CodeUploadRequired",
                param="definition.code_configuration",
            )
        version = self.store.create_version(
            project,
            agent_name,
            definition,
            description=validate_description(body.get("description")),
            metadata=validate_metadata(body.get("metadata")),
        )
        self.on_change()
        return version

    def create_version_from_code(
        self, project: str, agent_name: str, body: dict[str, Any], code: Incoming, content_hash: str
    ) -> AgentVersion:
        """2.x's `create_version_from_code`: `body` is the multipart `metadata` part, `code` the received zip.

        `content_hash` is the x-ms-code-zip-sha256 header, checked against the bytes. The same code and
        definition as the agent's latest (not failed) version answer that version rather than a new one.
        """
        self.check_can_create(agent_name)
        if self.bundles is None:
            raise BadRequest("This dockyard keeps no code bundles.", code="CodeBundlesNotSupported")
        definition = _definition_of(body)
        if definition.code_configuration is None:
            raise BadRequest(
                "create_version_from_code needs a code-based definition: HostedAgentDefinition with "
                "code_configuration=CodeConfiguration(runtime=..., entry_point=[...], dependency_resolution=...) "
                "and no container_configuration.",
                code="InvalidDefinition",
                param="definition.code_configuration",
            )
        description = validate_description(body.get("description"))
        metadata = validate_metadata(body.get("metadata"))
        code_archives.check_content_hash(content_hash, code.finish())
        with self.bundles.admit(code, definition.code_configuration["entry_point"]) as digest:
            definition = dataclasses.replace(
                definition, code_configuration={**definition.code_configuration, "content_hash": digest}
            )
            same = self._same_as_latest(project, agent_name, definition, description, metadata)
            if same is not None:
                return same
            version = self.store.create_version(
                project, agent_name, definition, description=description, metadata=metadata
            )
        self.on_change()
        return version

    def code_of(self, project: str, agent_name: str, version: str | None) -> tuple[AgentVersion, str]:
        """The version whose code `download_code` answers (the latest when None) and its bundle's hash."""
        found = (self.store.get_agent(project, agent_name).latest if version is None
                 else self.store.get_version(project, agent_name, version))
        code = found.definition.code_configuration
        if code is not None and not code.get("content_hash"):
            raise Conflict(
                f"Version {found.version} of agent {agent_name!r} was recorded without its code (by a dockyard "
                "older than code uploads). Create a new version with create_version_from_code.",
                code="AgentNotCodeBased",
            )
        if code is None:
            raise Conflict(
                f"Version {found.version} of agent {agent_name!r} runs a container image, so it has no code to "
                "download. download_code answers code-based versions (create_version_from_code).",
                code="AgentNotCodeBased",
            )
        return found, str(code["content_hash"])

    def collect_code_bundles(self) -> list[str]:
        """Remove the code bundles no version refers to any more; the hashes removed."""
        if self.bundles is None:
            return []
        referenced = set()
        for desired in self.store.desired_versions():
            code = desired.version.definition.code_configuration
            if code and code.get("content_hash"):
                referenced.add(str(code["content_hash"]))
        return self.bundles.prune(referenced)

    def create_agent(self, project: str, body: dict[str, Any]) -> Agent:
        """2.0.0b3's `agents.create(name=…, definition=…)`: a new agent with its first version."""
        name = body.get("name")
        validate_agent_name(name)  # type: ignore[arg-type]
        if self._exists(project, name):  # type: ignore[arg-type]
            raise Conflict(
                f"Agent {name!r} already exists. Add a version with create_version instead.", code="AgentAlreadyExists"
            )
        self.create_version(project, name, body)  # type: ignore[arg-type]
        return self.store.get_agent(project, name)  # type: ignore[arg-type]

    def update_agent(self, project: str, agent_name: str, body: dict[str, Any]) -> Agent:
        """2.0.0b3's `agents.update(…)`: versions are immutable, so an update is a new version."""
        self.store.get_agent(project, agent_name)
        self.create_version(project, agent_name, body)
        return self.store.get_agent(project, agent_name)

    def get_agent(self, project: str, agent_name: str) -> Agent:
        return self.store.get_agent(project, agent_name)

    def list_agents(self, project: str, request: PageRequest) -> Page[Agent]:
        return self.store.list_agents(project, request)

    def delete_agent(self, project: str, agent_name: str, *, force: bool = False) -> None:
        self.store.get_agent(project, agent_name)
        self._end_sessions(project, agent_name, None, force=force)
        self.store.delete_agent(project, agent_name)
        self.collect_code_bundles()
        self.on_change()

    def get_version(self, project: str, agent_name: str, version: str) -> AgentVersion:
        return self.store.get_version(project, agent_name, version)

    def list_versions(self, project: str, agent_name: str, request: PageRequest) -> Page[AgentVersion]:
        return self.store.list_versions(project, agent_name, request)

    def delete_version(self, project: str, agent_name: str, version: str, *, force: bool = False) -> None:
        self.store.get_version(project, agent_name, version)
        self._end_sessions(project, agent_name, str(version).rsplit(":", 1)[-1], force=force)
        self.store.delete_version(project, agent_name, version)
        self.collect_code_bundles()
        self.on_change()

    def _end_sessions(self, project: str, agent_name: str, version: str | None, *, force: bool) -> None:
        """Foundry's rule: live sessions block a delete (409) unless `force`, which deletes them too.

        Their sandboxes and volumes go with the next reconcile pass, which removes whatever no session owns.
        """
        if self.sessions is None:
            return
        mine = [s for s in self.sessions.list(project, agent_name) if version is None or s.version == version]
        live = [s for s in mine if s.status in (SessionStatus.CREATING, SessionStatus.ACTIVE)]
        if live and not force:
            what = f"version {version} of {agent_name!r}" if version else f"agent {agent_name!r}"
            raise Conflict(
                f"{len(live)} session(s) of {what} are active. Stop them first, or delete with force=true, which "
                "deletes the sessions as well.",
                code="ActiveSessionsExist",
            )
        for session in mine:
            self.sessions.delete(session.id)

    def _same_as_latest(
        self, project: str, agent_name: str, definition: HostedDefinition, description: str | None,
        metadata: dict[str, str],
    ) -> AgentVersion | None:
        """The agent's latest version when it is this very upload again (Foundry's dedup by code hash)."""
        try:
            latest = self.store.get_agent(project, agent_name).latest
        except NotFound:
            return None
        if latest.status is VersionStatus.FAILED:
            return None  # uploading the same code again is how a failed build is retried
        if (latest.definition.to_record(), latest.description, latest.metadata) == (
            definition.to_record(), description, metadata
        ):
            return latest
        return None

    def _exists(self, project: str, agent_name: str) -> bool:
        try:
            self.store.get_agent(project, agent_name)
        except NotFound:
            return False
        return True


def _definition_of(body: dict[str, Any]) -> HostedDefinition:
    if "definition" not in body:
        raise BadRequest("The request body needs a 'definition'.", code="InvalidRequestBody", param="definition")
    return HostedDefinition.from_wire(body["definition"])
