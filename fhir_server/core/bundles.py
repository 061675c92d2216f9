"""Bundle assembly without re-serialising stored resources (their bytes are embedded as-is)."""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import urlencode

import orjson

from fhir_server.storage import StoredVersion, now_us, us_to_instant

from .render import http_date


def raw(body: bytes) -> orjson.Fragment:
    return orjson.Fragment(body)


def bundle(type_: str, entries: list[dict[str, Any]], *, total: int | None = None,
           links: list[tuple[str, str]] | None = None) -> dict[str, Any]:
    b: dict[str, Any] = {
        "resourceType": "Bundle",
        "id": str(uuid.uuid4()),
        "meta": {"lastUpdated": us_to_instant(now_us())},
        "type": type_,
    }
    if total is not None:
        b["total"] = total
    if links:
        b["link"] = [{"relation": r, "url": u} for r, u in links]
    if entries:  # FHIR JSON allows no empty arrays: an empty page or _summary=count has no entry
        b["entry"] = entries
    return b


def search_entry(base: str, type_: str, id_: str, body: bytes, mode: str = "match") -> dict[str, Any]:
    return {"fullUrl": f"{base}/{type_}/{id_}", "resource": raw(body), "search": {"mode": mode}}


def history_entry(base: str, sv: StoredVersion, method: str, created: bool) -> dict[str, Any]:
    e: dict[str, Any] = {"fullUrl": f"{base}/{sv.type}/{sv.id}"}
    if not sv.deleted:
        e["resource"] = raw(sv.body)
    if sv.deleted:
        e["request"] = {"method": "DELETE", "url": f"{sv.type}/{sv.id}"}
        status = "204"
    elif created:
        e["request"] = {"method": "POST", "url": sv.type}
        status = "201"
    else:
        e["request"] = {"method": "PUT", "url": f"{sv.type}/{sv.id}"}
        status = "200"
    e["response"] = {
        "status": status,
        "etag": f'W/"{sv.version}"',
        "lastModified": us_to_instant(sv.last_updated),
    }
    return e


def url(base: str, path: str, params: list[tuple[str, str]]) -> str:
    q = urlencode(params, safe=":|,/$")
    return f"{base}/{path}" + (f"?{q}" if q else "")


__all__ = ["bundle", "history_entry", "http_date", "raw", "search_entry", "url"]
