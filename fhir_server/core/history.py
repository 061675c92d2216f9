"""History at instance, type and system level (https://hl7.org/fhir/R4B/http.html#history)."""

from __future__ import annotations

from typing import Any

from fhir_server.errors import bad_request
from fhir_server.search.dates import epoch_us
from fhir_server.storage import Store

from .bundles import bundle, history_entry, url

MAX_COUNT = 1000
KNOWN = frozenset({"_since", "_count", "_getpagesoffset", "_at_seq"})


def _int(params: dict[str, str], name: str, default: int) -> int:
    v = params.get(name)
    if v is None:
        return default
    if not v.isdigit():
        raise bad_request(f"{name} must be a non-negative integer", [name])
    return int(v)


async def history(store: Store, base: str, type_: str | None, id_: str | None,
                  params: tuple[tuple[str, str], ...], *, strict: bool = False) -> dict[str, Any]:
    """A history Bundle, newest first; unknown parameters are ignored, or a 400 when ``strict``."""
    unknown = sorted({k for k, _ in params} - KNOWN)
    if unknown and strict:
        raise bad_request(f"Unknown or unsupported history parameters: {', '.join(unknown)}", unknown)
    p = dict(params)
    count = min(_int(p, "_count", 50), MAX_COUNT)
    offset = _int(p, "_getpagesoffset", 0)
    since = None
    if "_since" in p:
        try:
            since = epoch_us(p["_since"])
        except ValueError as exc:
            raise bad_request(f"_since is not a valid instant: {p['_since']!r}", ["_since"]) from exc
    at = _int(p, "_at_seq", 0) or await store.last_seq()  # later pages see the same snapshot
    versions, total = await store.history(type_, id_, since=since, count=count, offset=offset, max_seq=at)
    path = "/".join(x for x in (type_, id_, "_history") if x)
    keep = [(k, v) for k, v in params if k in ("_since", "_count")]
    links = [("self", url(base, path, keep))]
    if offset + count < total:
        links.append(("next", url(base, path, [*keep, ("_getpagesoffset", str(offset + count)), ("_at_seq", str(at))])))
    if offset > 0:
        prev = max(0, offset - count)
        links.append(("previous", url(base, path, [*keep, ("_getpagesoffset", str(prev)), ("_at_seq", str(at))])))
    entries = [history_entry(base, sv, "", sv.version == 1) for sv in versions]
    return bundle("history", entries, total=total, links=links)
