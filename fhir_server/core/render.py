"""Shape responses: ETag, Location, Last-Modified and the ``Prefer: return`` choice."""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import format_datetime
from functools import lru_cache

from fhir_server.errors import outcome
from fhir_server.storage import StoredVersion, Written

from .request import FhirRequest, FhirResponse


def http_date(us: int) -> str:
    return _http_date(us // 1_000_000)


@lru_cache(maxsize=64)
def _http_date(seconds: int) -> str:
    """An HTTP date has whole seconds: the writes of one commit (a transaction's entries, a
    group of creates) and of the same second share one formatting (~5 us each)."""
    return format_datetime(datetime.fromtimestamp(seconds, UTC), usegmt=True)


def version_headers(base: str, type_: str, id_: str, version: int, last_updated: int) -> dict[str, str]:
    return {
        "ETag": f'W/"{version}"',
        "Last-Modified": http_date(last_updated),
        "Location": f"{base}/{type_}/{id_}/_history/{version}",
    }


def stored(req: FhirRequest, base: str, sv: StoredVersion, status: int = 200) -> FhirResponse:
    headers = version_headers(base, sv.type, sv.id, sv.version, sv.last_updated)
    headers.pop("Location")
    return FhirResponse(status, sv.body, headers)


def written(req: FhirRequest, base: str, w: Written, status: int | None = None) -> FhirResponse:
    """The response to a write, honouring ``Prefer: return=minimal|representation|OperationOutcome``."""
    code = status if status is not None else (201 if w.created else 200)
    headers = version_headers(base, w.type, w.id, w.version, w.last_updated)
    if code == 200:
        headers["Content-Location"] = headers.pop("Location")
    pref = req.prefer("return")
    if pref == "minimal":
        return FhirResponse(code, None, headers)
    if pref == "OperationOutcome":
        verb = "Created" if w.created else "Updated"
        body = outcome("information", "informational", f"{verb} {w.type}/{w.id} version {w.version}")
        return FhirResponse(code, body, headers)
    return FhirResponse(code, w.body, headers)


def ok_outcome(msg: str, status: int = 200) -> FhirResponse:
    return FhirResponse(status, outcome("information", "informational", msg))
