"""`GET /api/projects/{project}/admission`: what live sandboxes hold of the budget they must fit in (operator only).

dockyard's own route (Foundry has none): `dockyard status` shows it, and a script can check how much room is left
before opening sessions. The budget is the machine's, not a project's; every project's route answers the same.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from starlette.concurrency import run_in_threadpool

from dockyard.api.dependencies import authenticate_operator, project, services

router = APIRouter(prefix="/api/projects/{project}", dependencies=[Depends(authenticate_operator), Depends(project)])


@router.get("/admission")
async def admission(request: Request) -> dict[str, Any]:
    reconciler = services(request).reconciler
    if reconciler is None or reconciler.admission is None:
        return {"object": "admission", "enabled": False}
    budget = reconciler.admission.budget
    used = reconciler.admission.usage(await run_in_threadpool(reconciler.live_sandboxes))
    return {
        "object": "admission",
        "enabled": True,
        "sandboxes": used.sandboxes,
        "memory": {"used_bytes": used.memory_bytes, "budget_bytes": budget.memory_bytes,
                   "machine_bytes": budget.machine.memory_bytes},
        "cpu": {"used": float(used.cpu_cores), "budget": None if budget.cpu_cores is None else float(budget.cpu_cores),
                "machine": float(budget.machine.cpu_cores)},
        "max_sessions_per_agent": budget.sessions_per_agent,
        "on_full": budget.on_full,
    }
