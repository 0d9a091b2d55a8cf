"""Connections under `/api/projects/{project}/connections`, as the 2.x SDK reads them.

`client.connections.list(connection_type=, default_connection=)`, `get(name)` and
`get(name, include_credentials=True)` (`POST …/{name}/getConnectionWithCredentials`). Foundry lists
every connection of a project, so this lists both kinds dockyard keeps: model connections
(`dockyard connection add`, `dockyard model add`) and registry connections (`dockyard registry add`,
type `ContainerRegistry`, credentials `CustomKeys` with `username` and `password`).

Secrets appear on the credentials route only, never in a listing or a plain get.

Who may read what: any valid token may list and get connections (in Foundry an agent's identity reads
the connections it has access to, and these answers carry no secret). The credentials route is for
operators only: an agent gets the secrets it needs through `${{connections.NAME.credentials.FIELD}}`
in its definition, resolved when its sandbox starts, so a compromised agent cannot collect every key
in the project (403 AgentIdentityNotAllowed).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query, Request

from dockyard.api.dependencies import authenticate, authenticate_operator, project, wire_shape
from dockyard.api.deployments import catalog
from dockyard.models.deployments import connection_to_wire

router = APIRouter(prefix="/api/projects/{project}")


@router.get("/connections", dependencies=[Depends(authenticate), Depends(wire_shape)])
def list_connections(
    request: Request, project: str = Depends(project),
    connection_type: str | None = Query(None, alias="connectionType"),
    default_connection: bool | None = Query(None, alias="defaultConnection"),
) -> dict[str, Any]:
    found = catalog(request).connections(project, connection_type=connection_type,
                                         default_connection=default_connection)
    return {"value": [connection_to_wire(c, project, include_credentials=False) for c in found], "nextLink": None}


@router.get("/connections/{name}", dependencies=[Depends(authenticate), Depends(wire_shape)])
def get_connection(request: Request, name: str, project: str = Depends(project)) -> dict[str, Any]:
    return connection_to_wire(catalog(request).connection(project, name), project, include_credentials=False)


@router.post("/connections/{name}/getConnectionWithCredentials",
             dependencies=[Depends(authenticate_operator), Depends(wire_shape)])
def get_connection_with_credentials(request: Request, name: str, project: str = Depends(project)) -> dict[str, Any]:
    return connection_to_wire(catalog(request).connection(project, name), project, include_credentials=True)
