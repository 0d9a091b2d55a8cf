"""What the Responses tool loop asks of a platform tool (`code_interpreter`, `file_search`, `mcp`).

A model never sees a platform tool as such. Each entry of a request's `tools` that dockyard runs is bound
to a `PlatformTool`, which offers the model plain function tools (`functions`); when the model calls one
of those, the loop (`dockyard.tools.loop`) hands the call to `run`, which executes it outside dockyard's
own process and returns the output item the caller sees (in OpenAI's shape: `code_interpreter_call`,
`file_search_call`, `mcp_call`, `mcp_approval_request`) plus the text the model reads next. This is why
any deployment drives the loop, the local model included: to the model these are function calls.

The same bound tools serve toolboxes (`dockyard.tools.toolboxes`): an MCP server that lists `functions`
and calls `run`, so a tool behaves the same whether a Responses call or an agent's MCP client uses it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from dockyard.identity.ownership import Caller

# Function names the model sees are prefixed by the tool's kind, so two tools cannot collide and the
# loop knows at once which bound tool a call belongs to (OpenAI limits names to 64 of [A-Za-z0-9_-]).
FUNCTION_NAME_LIMIT = 64


@dataclass(frozen=True)
class ToolContext:
    """Who a tool acts for and where its traces go; built once per Responses call or toolbox call."""

    project: str
    # Files, vector stores and containers a tool makes are the caller's (identity/ownership.py rules).
    caller: Caller
    request_id: str
    # One line into dockyard's log and the request's trace: every tool call is logged (issue 11 §4).
    # Never pass secrets (MCP headers, tokens) to it.
    log: Callable[[str], None]
    # The `x-agent-foundry-call-id` of the call, when an agent made it (passed on to MCP servers).
    foundry_call_id: str | None = None


@dataclass(frozen=True)
class FunctionSpec:
    """One function tool as the model sees it (`{"type": "function", "name", "description", "parameters"}`)."""

    name: str
    description: str
    parameters: Mapping[str, Any]

    def to_tool(self) -> dict[str, Any]:
        return {"type": "function", "name": self.name, "description": self.description,
                "parameters": dict(self.parameters)}


@dataclass
class ToolOutcome:
    """The result of one call: what the caller sees and what the model reads next.

    `model_output` None ends the turn without another model call: the response is returned as it is,
    with `item` last (an `mcp_approval_request` waits for the caller's `mcp_approval_response`).
    """

    item: dict[str, Any]
    model_output: str | None
    # Items to show before `item` (none usually).
    extra_items: list[dict[str, Any]] = field(default_factory=list)
    # Annotations the loop puts on the final message's output_text (`file_citation`,
    # `container_file_citation`), in OpenAI's shapes; the loop sets their `index`/`start_index`/`end_index`.
    annotations: list[dict[str, Any]] = field(default_factory=list)


class PlatformTool(Protocol):
    """One `tools` entry bound to a request: it knows its configuration and its caller."""

    async def prepare(self, ctx: ToolContext) -> list[dict[str, Any]]:
        """Called once before the first model call; returns output items to show first (`mcp_list_tools`).

        Raises a DockyardError with a clear message when the tool cannot be used (a server that does
        not answer, a vector store that does not exist): the call then fails with that 4xx/5xx.
        """
        ...

    def functions(self) -> list[FunctionSpec]:
        """The function tools the model is offered (valid after `prepare`)."""
        ...

    async def run(self, ctx: ToolContext, name: str, arguments: Mapping[str, Any], call_id: str) -> ToolOutcome:
        """Execute one function call the model made. Failures of the tool itself (code that raised, a
        server that answered garbage, a timeout) are returned as an outcome with an error in the item and
        a model_output saying what went wrong, not raised: the model may recover, and the caller sees it."""
        ...

    async def resume(self, ctx: ToolContext, request_item: Mapping[str, Any], approve: bool,
                     reason: str | None) -> ToolOutcome:
        """Continue after the caller answered an approval request this tool made (`mcp` only)."""
        ...


class ToolKind(Protocol):
    """A kind of platform tool (one per `type`), built once at start-up with what it needs."""

    type: str

    def bind(self, config: Mapping[str, Any], project: str, caller: Caller) -> PlatformTool:
        """Check one `tools` entry of this type (BadRequest naming the field on a bad one) and bind it."""
        ...


ToolKinds = Mapping[str, ToolKind]
