"""``_summary`` and ``_elements`` on search results (https://hl7.org/fhir/R4B/search.html#summary).

Subsetting works on the top-level elements of each resource: ``_summary=true`` keeps the
elements the R4B definitions mark as summary (read from the fhir.resources models),
``text`` keeps id, meta, text and the required primitives, ``data`` drops the narrative, and
``_elements`` keeps the listed elements (a choice name such as ``value`` keeps
``valueQuantity``). A subsetted resource carries the ``SUBSETTED`` tag. The resource is
parsed and written losslessly, so decimals keep their precision.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from fhir.resources.R4B import get_fhir_model_class

from fhir_server.storage import dumps, loads

SUBSETTED = {"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue", "code": "SUBSETTED"}
_ALWAYS = frozenset({"resourceType", "id", "meta"})


@cache
def _flagged(type_: str, flag: str) -> frozenset[str]:
    fields = get_fhir_model_class(type_).model_fields
    return frozenset(k for k, f in fields.items() if (f.json_schema_extra or {}).get(flag))  # type: ignore[union-attr]


def _base(key: str) -> str:
    return key[1:] if key.startswith("_") else key


def _choice_of(key: str, names: tuple[str, ...]) -> bool:
    return any(key == n or (key.startswith(n) and key[len(n):][:1].isupper()) for n in names)


def _keep(type_: str, key: str, summary: str | None, elements: tuple[str, ...]) -> bool:
    name = _base(key)
    if key in _ALWAYS:
        return True
    if summary == "true" and name not in _flagged(type_, "summary_element_property"):
        return False
    if summary == "text" and name != "text" and name not in _flagged(type_, "element_required"):
        return False
    if summary == "data" and name == "text":
        return False
    return not elements or _choice_of(name, elements)


def applies(summary: str | None, elements: tuple[str, ...]) -> bool:
    return summary in ("true", "text", "data") or bool(elements)


def subset(body: bytes, type_: str, summary: str | None, elements: tuple[str, ...]) -> bytes:
    """The stored JSON of one ``type_`` resource, cut down per ``_summary`` / ``_elements``."""
    res: dict[str, Any] = loads(body)
    out = {k: v for k, v in res.items() if _keep(type_, k, summary, elements)}
    meta = dict(out.get("meta") or {})
    meta["tag"] = [*meta.get("tag", []), SUBSETTED]
    out["meta"] = meta
    return dumps(out)
