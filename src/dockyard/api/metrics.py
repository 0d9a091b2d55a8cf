"""`GET /metrics`: dockyard in Prometheus' text format, for the operator (a token that is not an agent's).

The counters themselves are dockyard.metrics; this wires the reporters to them: the gateway's finished
calls and cold starts (counted on the trace writer's thread), the model relay's usage objects (tokens per
deployment; an answer without one counts none), the containers runtime's pulls, and both runtimes'
dependency builds.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

from fastapi import APIRouter, Depends, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.concurrency import run_in_threadpool

from dockyard.api.dependencies import Services, authenticate_operator, services
from dockyard.gateway import tracing
from dockyard.gateway.tracing import GatewayCall
from dockyard.models import relay
from dockyard.runtime import containers, python_runtimes
from dockyard.store.traces import SpanRecord, TraceWriter

router = APIRouter()


def gateway_call_finished(services: Services, writer: TraceWriter | None) -> Callable[[GatewayCall, int], None]:
    """What the tracing middleware does with a finished gateway call: count it, hand its spans to the writer."""
    assert services.metrics is not None
    counted = services.metrics
    tracing.on_cold_start(counted.cold_start)
    relay.on_usage(counted.tokens_used)
    containers.on_pull(lambda outcome: counted.pulls.labels(outcome).inc())
    python_runtimes.on_build(lambda outcome: counted.builds.labels(outcome).inc())

    def count_and_trace(call: GatewayCall, end_ns: int) -> list[SpanRecord]:
        counted.call_finished(call, (end_ns - call.start_ns) / 1e9)
        return call.spans(end_ns)

    def finished(call: GatewayCall, end_ns: int) -> None:
        # Both on the writer's thread: the request path pays for one queue put.
        if writer is not None:
            writer.submit(functools.partial(count_and_trace, call, end_ns))
        else:
            counted.call_finished(call, (end_ns - call.start_ns) / 1e9)

    return finished


@router.get("/metrics", dependencies=[Depends(authenticate_operator)])
async def metrics(request: Request) -> Response:
    the = services(request)
    assert the.metrics is not None, "create_app sets the metrics"
    body = await run_in_threadpool(generate_latest, the.metrics.registry)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
