"""The `code_interpreter` tool: the model writes Python, dockyard runs it in a sandbox, the model reads the output.

A request's `{"type": "code_interpreter", "container": {"type": "auto", "file_ids": [...], "memory_limit": "1g"}}`
gets a new container (a /mnt/data folder, `dockyard.tools.code_containers`) for that call, reused across the
loop's rounds; `"container": "cntr_…"` names one of the caller's that has not expired, with its files. The
model is offered one function, `code_interpreter(code)`; each call runs a fresh `python3 -I` in a sandbox
(`dockyard.runtime.code_sandboxes`: a locked-down container with an engine, namespaces otherwise), so files
in /mnt/data persist between calls and variables do not. Files a run writes become container files, cited
with `container_file_citation` annotations and served by `GET …/openai/v1/containers/{id}/files/{id}/content`.

The code's failures are outcomes, not errors: an exception (status "failed", the traceback in the logs),
the memory limit (failed), the time limit (incomplete); the model reads what went wrong.
"""

from __future__ import annotations

import asyncio
import base64
import secrets
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from dockyard.domain.errors import BadRequest
from dockyard.identity.ownership import Caller
from dockyard.runtime.code_sandboxes import (
    DATA_PATH,
    CodeSandbox,
    ContainerSandbox,
    ProcessSandbox,
    RunResult,
    SandboxLimits,
    prepare_data_folder,
    remove_leftovers,
)
from dockyard.runtime.python_runtimes import runtime_image
from dockyard.store.files import StoredFile
from dockyard.tools.base import FunctionSpec, ToolContext, ToolOutcome
from dockyard.tools.code_containers import CodeContainer, ContainerFile, ContainerStore

if TYPE_CHECKING:
    from dockyard.tools.dependencies import ToolDependencies

TYPE = "code_interpreter"
# The longest code one call may carry, in UTF-8 bytes (it travels as one argument: the kernel's limit is 128 KiB).
MAX_CODE_BYTES = 100_000
# What the model reads back of the output: small models have small contexts.
MODEL_OUTPUT_CHARS = 4000
# PNGs written by a run are shown as image outputs (data URLs) up to this size; bigger ones stay files.
MAX_INLINE_IMAGE_BYTES = 512 * 1024
# OpenAI's memory_limit values.
MEMORY_LIMITS = {"1g": 1024**3, "4g": 4 * 1024**3, "16g": 16 * 1024**3, "64g": 64 * 1024**3}
_DESCRIPTION = (
    "Runs Python 3 code and returns what it prints. Files are in /mnt/data (the working directory): read "
    "uploaded files from there and save files you create there. No network. Each call starts a fresh "
    "interpreter: files persist between calls, variables do not. Print the results you need."
)


class CodeInterpreterKind:
    type = TYPE

    def __init__(self, deps: ToolDependencies) -> None:
        settings = deps.settings
        self.containers = ContainerStore(deps.home.root / "containers")
        self.files = getattr(deps, "files", None)  # the Files API's store, for container.file_ids
        self.limits = SandboxLimits(
            timeout_seconds=settings.code_interpreter_timeout_seconds,
            memory_bytes=settings.code_interpreter_memory_bytes,
            output_bytes=settings.code_interpreter_output_bytes,
            file_bytes=settings.code_interpreter_file_bytes,
        )
        self.sandbox: CodeSandbox
        if deps.engine is not None:
            instance = deps.home.instance_id()
            remove_leftovers(deps.engine, instance)
            self.sandbox = ContainerSandbox(deps.engine, runtime_image("python_3_11", settings.code_image), instance)
        else:
            self.sandbox = ProcessSandbox(hide=[deps.home.root])

    def bind(self, config: Mapping[str, Any], project: str, caller: Caller) -> CodeInterpreterTool:
        container = config.get("container", {"type": "auto"})
        if isinstance(container, str):
            if not container.startswith("cntr_"):
                raise BadRequest("'container' must be a container id (cntr_…) or {\"type\": \"auto\"}.",
                                 code="InvalidContainer", param="tools.container")
            return CodeInterpreterTool(self, project, caller, container_id=container)
        if not isinstance(container, Mapping) or container.get("type", "auto") != "auto":
            raise BadRequest("'container' must be {\"type\": \"auto\", \"file_ids\": [...]} or a container id "
                             "(cntr_…).", code="InvalidContainer", param="tools.container")
        file_ids = container.get("file_ids") or []
        if not isinstance(file_ids, list) or not all(isinstance(f, str) and f for f in file_ids) or len(file_ids) > 100:
            raise BadRequest("'container.file_ids' must be a list of up to 100 file ids (file-…) from the Files API.",
                             code="InvalidContainer", param="tools.container.file_ids")
        memory_limit = container.get("memory_limit")
        if memory_limit is not None and memory_limit not in MEMORY_LIMITS:
            raise BadRequest(f"'container.memory_limit' must be one of {', '.join(MEMORY_LIMITS)}.",
                             code="InvalidContainer", param="tools.container.memory_limit")
        return CodeInterpreterTool(self, project, caller, file_ids=list(file_ids), memory_limit=memory_limit)


class CodeInterpreterTool:
    """One `code_interpreter` entry bound to a request: its container, made or found in `prepare`."""

    def __init__(self, kind: CodeInterpreterKind, project: str, caller: Caller, *, container_id: str | None = None,
                 file_ids: list[str] | None = None, memory_limit: str | None = None) -> None:
        self.kind = kind
        self.project = project
        self.caller = caller
        self.container_id = container_id
        self.file_ids = file_ids or []
        self.memory_limit = memory_limit
        self.container: CodeContainer | None = None
        self.sources: list[StoredFile] = []

    async def prepare(self, ctx: ToolContext) -> list[dict[str, Any]]:
        """Checks what the entry names (a container of the caller's, files of the caller's); the container
        itself is made by the first run, so listing the tool (a toolbox's tools/list) makes nothing."""
        await asyncio.to_thread(self._check)
        return []

    def _check(self) -> None:
        store = self.kind.containers
        if self.container_id is not None:
            self.container = store.get(self.project, self.caller, self.container_id)
            return
        files = self.kind.files
        if self.file_ids and files is None:
            raise BadRequest("This dockyard has no Files API to take container.file_ids from.",
                             code="InvalidContainer", param="tools.container.file_ids")
        # A file id that is not the caller's fails the call (FileNotFound) before anything runs.
        self.sources = [files.get(self.project, self.caller.owner, f) for f in self.file_ids] if files else []

    def _container(self, ctx: ToolContext) -> CodeContainer:
        if self.container is not None:
            return self.container
        self._check()
        store = self.kind.containers
        container = store.create(self.project, self.caller.owner, memory_limit=self.memory_limit)
        files = self.kind.files
        for stored in self.sources:
            assert files is not None
            store.add_file(container, stored.filename, files.path(stored))
        ctx.log(f"code_interpreter: container {container.id} made ({len(container.files)} file(s) copied in)")
        self.container = container
        return container

    def functions(self) -> list[FunctionSpec]:
        return [FunctionSpec(
            name=TYPE, description=_DESCRIPTION,
            parameters={"type": "object", "properties": {"code": {
                "type": "string", "description": "The Python 3 code to run. Files are in /mnt/data."}},
                "required": ["code"], "additionalProperties": False},
        )]

    async def run(self, ctx: ToolContext, name: str, arguments: Mapping[str, Any], call_id: str) -> ToolOutcome:
        container = await asyncio.to_thread(self._container, ctx)
        code = arguments.get("code")
        item: dict[str, Any] = {"id": f"ci_{secrets.token_hex(24)}", "type": "code_interpreter_call",
                                "status": "failed", "code": code if isinstance(code, str) else None,
                                "container_id": container.id, "outputs": []}
        if not isinstance(code, str) or not code.strip():
            ctx.log(f"code_interpreter: call {call_id} refused: no code")
            return ToolOutcome(item, "Error: the code_interpreter call needs a non-empty 'code' string of Python.")
        size = len(code.encode(errors="replace"))
        if size > MAX_CODE_BYTES or "\x00" in code:
            ctx.log(f"code_interpreter: call {call_id} refused: {size} bytes of code")
            why = (f"the code is {size} bytes; at most {MAX_CODE_BYTES} may run at once. Write it in smaller "
                   "pieces, saving intermediate results in /mnt/data." if size > MAX_CODE_BYTES
                   else "the code contains a NUL character, which Python source cannot.")
            return ToolOutcome(item, f"Error: {why}")
        limits = self.kind.limits
        if container.memory_limit in MEMORY_LIMITS:
            limits = SandboxLimits(**{**limits.__dict__, "memory_bytes": MEMORY_LIMITS[container.memory_limit]})
        result, new_files = await asyncio.to_thread(self._run_locked, container, code, limits)
        ctx.log(f"code_interpreter: call {call_id} in {container.id} ({self.kind.sandbox.kind}): {len(code)} "
                f"characters of code, exit {result.exit_code}, {result.duration_seconds:.2f}s"
                + (", timed out" if result.timed_out else "") + (", out of memory" if result.out_of_memory else "")
                + (f", sandbox error: {result.error}" if result.error else "")
                + (f", {len(new_files)} file(s) written" if new_files else ""))
        outcome = _outcome(item, container, result, new_files, limits)
        images = await asyncio.to_thread(self._images, container, new_files)
        item["outputs"] += [{"type": "image", "url": url} for url in images]
        return outcome

    def _images(self, container: CodeContainer, new_files: list[ContainerFile]) -> list[str]:
        """PNGs the run wrote, as data URLs (OpenAI's image outputs), up to a size worth inlining."""
        urls = []
        for entry in new_files:
            if entry.path.lower().endswith(".png") and entry.bytes <= MAX_INLINE_IMAGE_BYTES:
                size, chunks = self.kind.containers.open_file(container, entry)
                data = b"".join(chunks)
                if size <= MAX_INLINE_IMAGE_BYTES and data.startswith(b"\x89PNG\r\n\x1a\n"):
                    urls.append("data:image/png;base64," + base64.b64encode(data).decode())
        return urls

    def _run_locked(self, container: CodeContainer, code: str,
                    limits: SandboxLimits) -> tuple[RunResult, list[ContainerFile]]:
        store = self.kind.containers
        with store.lock(container):
            data = store.data(container)
            prepare_data_folder(data)
            before = store.snapshot(container)
            result = self.kind.sandbox.run(code, data, limits)
            return result, store.register_changes(container, before)

    async def resume(self, ctx: ToolContext, request_item: Mapping[str, Any], approve: bool,
                     reason: str | None) -> ToolOutcome:
        raise BadRequest("code_interpreter calls need no approval.", code="InvalidApprovalResponse")


def _outcome(item: dict[str, Any], container: CodeContainer, result: RunResult, new_files: list[ContainerFile],
             limits: SandboxLimits) -> ToolOutcome:
    logs = result.output
    if result.truncated:
        logs += f"\n[output truncated at {limits.output_bytes} bytes]"
    item["outputs"] = [{"type": "logs", "logs": logs}] if logs else []
    if result.error is not None:
        error = f"the sandbox could not run the code: {result.error}"
    elif result.timed_out:
        item["status"] = "incomplete"
        error = (f"the code ran longer than the {limits.timeout_seconds:g} s limit and was stopped. Make it "
                 "faster or do less per call.")
    elif result.out_of_memory:
        error = (f"the code ran out of memory (limit {limits.memory_bytes // (1024 * 1024)} MiB) and was "
                 "stopped. Use less memory (process data in pieces).")
    elif result.exit_code != 0:
        error = f"the code raised an error (exit status {result.exit_code}); see the traceback above."
    else:
        item["status"] = "completed"
        error = None
    if error is not None:
        item["error"] = {"message": error}
    half = MODEL_OUTPUT_CHARS // 2
    shown = logs if len(logs) <= MODEL_OUTPUT_CHARS else f"{logs[:half]}\n…\n{logs[-half:]}"
    lines = [shown.rstrip() or "(no output)"]
    if new_files:
        lines.append(f"Files written (container {container.id}): "
                     + ", ".join(f"{DATA_PATH}/{f.path}" for f in new_files))
    if error is not None:
        lines.append(f"Error: {error}")
    annotations = [{"type": "container_file_citation", "container_id": container.id, "file_id": f.id,
                    "filename": f.filename} for f in new_files]
    return ToolOutcome(item, "\n".join(lines), annotations=annotations)
