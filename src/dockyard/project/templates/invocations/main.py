"""{{name}} on the Invocations protocol, with Microsoft's hosting adapter (azure-ai-agentserver-invocations).

POST /invocations takes {"message": "..."} and answers {"reply": "..."}; with "stream": true it answers
Server-Sent Events, one `event: delta` per piece and `event: done` at the end. The adapter also serves
GET /readiness, on $PORT (8088). This file only wires the adapter to agent.py, where the answers are made.
"""

from __future__ import annotations

import json
import os

from azure.ai.agentserver.invocations import InvocationAgentServerHost
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from agent import reply, words

app = InvocationAgentServerHost()


@app.invoke_handler
async def invoke(request: Request) -> Response:
    payload = await request.json()
    text = str(payload.get("message", "")) if isinstance(payload, dict) else ""
    # One line per request on stdout: it shows in `dockyard logs` (and in Foundry's log stream).
    print(f"{{name}}: invocation {request.state.invocation_id}: {text[:200]!r}", flush=True)
    if not (isinstance(payload, dict) and payload.get("stream")):
        return JSONResponse({"reply": await reply(text)})

    async def events():
        async for piece in words(text):
            yield f"event: delta\ndata: {json.dumps({'delta': piece})}\n\n"
        yield "event: done\ndata: {}\n\n"

    return StreamingResponse(events(), media_type="text/event-stream")


if __name__ == "__main__":
    print(f"{{name}}: starting on port {os.environ.get('PORT', '8088')}", flush=True)
    app.run()
