"""Central-station dashboard: one static page served at ``/`` that reads the node's own FHIR API.

The page holds no server-side state and needs nothing but ``/fhir``: the bed list comes from
``Patient`` search, the numerics from ``Observation/$lastn`` (one call per patient each second,
the load issue 2 sized ``$lastn`` for), and open alerts from ``DetectedIssue`` search. Once SMART
authorization lands the page obtains a token like any other SMART app.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from importlib import resources
from typing import Any

from fastapi import APIRouter
from fastapi.responses import HTMLResponse


def router() -> APIRouter:
    page = resources.files(__package__).joinpath("index.html").read_text(encoding="utf-8")
    r = APIRouter()

    @r.get("/", include_in_schema=False)
    async def index() -> HTMLResponse:
        return HTMLResponse(page, headers={"Cache-Control": "no-cache"})

    return r


@contextlib.asynccontextmanager
async def dashboard_service(node: Any) -> AsyncIterator[APIRouter]:
    r = router()
    node.routers.append(r)
    yield r
