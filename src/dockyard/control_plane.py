"""The control plane: Foundry's rules for agents and versions, applied before anything is stored.

Routes hand it plain data; it validates with the domain and records desired state in the store. It
knows nothing of HTTP or wire shapes, so the same calls serve the API, the CLI and tests.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from dockyard.domain.agents import Agent, AgentVersion, validate_description, validate_metadata
from dockyard.domain.definitions import HostedDefinition
from dockyard.domain.errors import CAPABILITY_HOST_NOT_FOUND, BadRequest, Conflict, NotFound
from dockyard.domain.names import validate_agent_name
from dockyard.domain.paging import Page, PageRequest
from dockyard.domain.sessions import SessionStatus
from dockyard.store.agents import AgentStore
from dockyard.store.sessions import SessionStore


class ControlPlane:
    def __init__(
        self, store: AgentStore, *, capability_host: bool = True, on_change: Callable[[], None] = lambda: None,
        sessions: SessionStore | None = None,
    ) -> None:
        self.store = store
        self.sessions = sessions
        self.capability_host = capability_host
        # Called after desired state changes, so the reconciler acts now rather than at its next tick.
        self.on_change = on_change

    def create_version(self, project: str, agent_name: str, body: dict[str, Any]) -> AgentVersion:
        validate_agent_name(agent_name)
        if not self.capability_host:
            raise BadRequest(
                "This account has no capability host, so hosted agents cannot be created. In Foundry, create an "
                "account-level capability host with enablePublicHostingEnvironment=true; on dockyard, start it "
                "without --no-capability-host.",
                code=CAPABILITY_HOST_NOT_FOUND,
            )
        if "definition" not in body:
            raise BadRequest("The request body needs a 'definition'.", code="InvalidRequestBody", param="definition")
        definition = HostedDefinition.from_wire(body["definition"])
        version = self.store.create_version(
            project,
            agent_name,
            definition,
            description=validate_description(body.get("description")),
            metadata=validate_metadata(body.get("metadata")),
        )
        self.on_change()
        return version

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
        self.on_change()

    def get_version(self, project: str, agent_name: str, version: str) -> AgentVersion:
        return self.store.get_version(project, agent_name, version)

    def list_versions(self, project: str, agent_name: str, request: PageRequest) -> Page[AgentVersion]:
        return self.store.list_versions(project, agent_name, request)

    def delete_version(self, project: str, agent_name: str, version: str, *, force: bool = False) -> None:
        self.store.get_version(project, agent_name, version)
        self._end_sessions(project, agent_name, str(version).rsplit(":", 1)[-1], force=force)
        self.store.delete_version(project, agent_name, version)
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

    def _exists(self, project: str, agent_name: str) -> bool:
        try:
            self.store.get_agent(project, agent_name)
        except NotFound:
            return False
        return True
