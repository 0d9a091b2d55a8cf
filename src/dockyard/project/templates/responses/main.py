"""{{name}} on the Responses protocol, with Microsoft's hosting adapter (azure-ai-agentserver-responses).

The adapter serves what Foundry (and dockyard) call: POST /responses (JSON, or Server-Sent Events when the
caller asks for `stream: true`), GET /readiness, and the rest of the Responses surface, on $PORT (8088).
This file only wires the adapter to agent.py, where the answers are made.
"""

from __future__ import annotations

import asyncio
import os

from azure.ai.agentserver.responses import CreateResponse, ResponseContext, ResponsesAgentServerHost, TextResponse

from agent import words

app = ResponsesAgentServerHost()


@app.response_handler
async def handler(request: CreateResponse, context: ResponseContext, cancellation_signal: asyncio.Event):
    text = await context.get_input_text() or ""
    # One line per request on stdout: it shows in `dockyard logs` (and in Foundry's log stream).
    print(f"{{name}}: request {context.response_id}: {text[:200]!r}", flush=True)
    return TextResponse(context, request, text=words(text))


if __name__ == "__main__":
    print(f"{{name}}: starting on port {os.environ.get('PORT', '8088')}", flush=True)
    app.run()
