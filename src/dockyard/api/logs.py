"""Container logs as Server-Sent Events, on 2.x's session log-stream route.

Each frame is `event: log` with a JSON line `{timestamp, stream, message}`, the shape Foundry documents
(and calls non-contractual). Until sessions exist, a version has one sandbox, whose session id is
`default`. The stream stays open until the client leaves; leaving closes the engine connection too.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator

from fastapi import APIRouter, Depends, Request
from fastapi.responses import StreamingResponse
from starlette.concurrency import iterate_in_threadpool, run_in_threadpool

from dockyard.api.dependencies import authenticate_operator, project, services, wire_shape
from dockyard.domain.definitions import WireShape
from dockyard.domain.errors import NotFound
from dockyard.runtime.base import WorkloadKey

router = APIRouter(prefix="/api/projects/{project}", dependencies=[Depends(authenticate_operator)])

VERSION_SANDBOX_SESSION = "default"


def _frame(stream: str, message: str) -> bytes:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + f".{int(time.time() * 1000) % 1000:03d}Z"
    data = json.dumps({"timestamp": stamp, "stream": stream, "message": message})
    return f"event: log\ndata: {data}\n\n".encode()


@router.get("/agents/{agent_name}/versions/{agent_version}/sessions/{session_id}:logstream")
async def log_stream(
    request: Request, agent_name: str, agent_version: str, session_id: str,
    _shape: WireShape = Depends(wire_shape), project: str = Depends(project),
) -> StreamingResponse:
    the = services(request)
    uid = await run_in_threadpool(the.control_plane.store.version_uid, project, agent_name, agent_version)
    if session_id != VERSION_SANDBOX_SESSION:
        raise NotFound(
            f"Session {session_id!r} does not exist for {agent_name}:{agent_version}. The version's own sandbox is "
            f"session {VERSION_SANDBOX_SESSION!r}.",
            code="SessionNotFound",
        )
    stream = None
    if the.runtime is not None:
        stream = await run_in_threadpool(the.runtime.follow_logs, WorkloadKey(uid), 200)
    if stream is None:
        raise NotFound(
            f"{agent_name}:{agent_version} has no running container to stream logs from; its status says why.",
            code="SandboxNotFound",
        )

    async def frames() -> AsyncIterator[bytes]:
        try:
            yield _frame("status", "Successfully connected to container")
            async for line in iterate_in_threadpool(iter(stream)):
                yield _frame("stdout", line)
        finally:
            stream.close()

    return StreamingResponse(frames(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
