"""Model deployments under `/api/projects/{project}/deployments`, as the 2.x SDK reads them.

`client.deployments.list(model_publisher=, model_name=, deployment_type=)` and `get(name)`: lists are
`{value, nextLink}` (one page: a project has few deployments). Read-only, as in Foundry, where
deployments are made in the portal or ARM; here `dockyard model add` makes them.

Any valid token may read them, an agent's own included: an agent needs to know which deployments it
may call, and a deployment carries no secret.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query, Request

from dockyard.api.dependencies import authenticate, project, services, wire_shape
from dockyard.domain.errors import ServiceUnavailable
from dockyard.models.catalog import Catalog
from dockyard.models.deployments import deployment_to_wire

router = APIRouter(prefix="/api/projects/{project}", dependencies=[Depends(authenticate)])


def catalog(request: Request) -> Catalog:
    found = services(request).catalog
    if found is None:
        raise ServiceUnavailable("This dockyard has no model catalog.", code="ModelCatalogUnavailable")
    return found


@router.get("/deployments", dependencies=[Depends(wire_shape)])
def list_deployments(
    request: Request, project: str = Depends(project),
    model_publisher: str | None = Query(None, alias="modelPublisher"),
    model_name: str | None = Query(None, alias="modelName"),
    deployment_type: str | None = Query(None, alias="deploymentType"),
) -> dict[str, Any]:
    found = catalog(request).deployments(project, model_publisher=model_publisher, model_name=model_name,
                                         deployment_type=deployment_type)
    return {"value": [deployment_to_wire(d) for d in found], "nextLink": None}


@router.get("/deployments/{name}", dependencies=[Depends(wire_shape)])
def get_deployment(request: Request, name: str, project: str = Depends(project)) -> dict[str, Any]:
    return deployment_to_wire(catalog(request).deployment(project, name))
