"""Container logs as Server-Sent Events, on 2.x's session log-stream route.

Each frame is `event: log` with a JSON line `{timestamp, stream, message}`, the shape Foundry documents
(and calls non-contractual). A session id names that session's sandbox; `default` names the version's
own (the container that made it active). The stream stays open until the client leaves; leaving closes
the engine connection too.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator

from anyio import to_thread
from fastapi import APIRouter, Depends, Request
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from dockyard.api.dependencies import authenticate_caller, authenticate_operator, project, services, wire_shape
from dockyard.api.schemas import answers
from dockyard.domain.definitions import WireShape
from dockyard.domain.errors import Forbidden, NotFound
from dockyard.identity.ownership import may_manage, owner_of
from dockyard.runtime.base import WorkloadKey

router = APIRouter(prefix="/api/projects/{project}", dependencies=[Depends(authenticate_operator)])

VERSION_SANDBOX_SESSION = "default"
# Lines of history sent before following: Microsoft's adapter writes each telemetry record as a
# multi-line JSON dump (about 500 lines for a start and one request), so a short tail misses the
# agent's own lines.
TAIL_LINES = 1000


def _frame(stream: str, message: str) -> bytes:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + f".{int(time.time() * 1000) % 1000:03d}Z"
    data = json.dumps({"timestamp": stamp, "stream": stream, "message": message})
    return f"event: log\ndata: {data}\n\n".encode()


@router.get("/agents/{agent_name}/versions/{agent_version}/sessions/{session_id}:logstream",
            responses=answers(media_type="text/event-stream",
                              description="`event: log` frames until the client leaves."))
async def log_stream(
    request: Request, agent_name: str, agent_version: str, session_id: str,
    _shape: WireShape = Depends(wire_shape), project: str = Depends(project),
) -> StreamingResponse:
    the = services(request)
    # A session's log holds what its callers sent: it is theirs (and the operator's), as the session is;
    # the version's own sandbox serves no one caller, so its log is the operator's.
    caller = authenticate_caller(request)
    uid = await run_in_threadpool(the.control_plane.store.version_uid, project, agent_name, agent_version)
    key = WorkloadKey(uid)
    if session_id == VERSION_SANDBOX_SESSION and not caller.operator:
        raise Forbidden(
            f"The log of {agent_name}:{agent_version}'s own sandbox is for the operator (the identity `dockyard env` "
            "hands out). Name one of your sessions instead.",
            code="OperatorOnly",
        )
    if session_id != VERSION_SANDBOX_SESSION:
        session = await run_in_threadpool(the.sessions.find, project, agent_name, session_id)
        if (session is None or session.version_uid != uid
                or not may_manage(caller, owner_of(session.owner_subject, session.owner_user))):
            raise NotFound(
                f"Session {session_id!r} does not exist for {agent_name}:{agent_version}. Name one of its sessions "
                f"(list_sessions), or {VERSION_SANDBOX_SESSION!r} for the version's own sandbox.",
                code="SessionNotFound",
            )
        key = WorkloadKey(uid, session_id)
    stream = None
    if the.runtime is not None:
        stream = await run_in_threadpool(the.runtime.follow_logs, key, TAIL_LINES)
    if stream is None:
        raise NotFound(
            f"{agent_name}:{agent_version} session {session_id!r} has no container to stream logs from (a released "
            "session has none until its next request); the version's status says why if it failed.",
            code="SandboxNotFound",
        )

    async def frames() -> AsyncIterator[bytes]:
        # Each line is read in a worker thread, which blocks until the agent writes one. When the client
        # leaves (or dockyard stops) the wait is abandoned, not sat out: a thread cannot be cancelled, so
        # a plain threadpool call would hold the request (and a graceful stop) until the agent's next line.
        # Closing the stream then ends the abandoned read (LogStream.close may come from another thread).
        lines = iter(stream)
        try:
            yield _frame("status", "Successfully connected to container")
            while (line := await to_thread.run_sync(next, lines, None, abandon_on_cancel=True)) is not None:
                yield _frame("stdout", line)
        finally:
            stream.close()

    return StreamingResponse(frames(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
