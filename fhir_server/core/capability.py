"""The CapabilityStatement, generated from the same registries that drive routing and indexing.

https://hl7.org/fhir/R4B/capabilitystatement.html
"""

from __future__ import annotations

from functools import cache
from typing import Any

from fhir_server.search.registry import search_params

from .resources import resource_types

SOFTWARE = {"name": "Vitalgate", "version": "0.1.0"}
INSTANCE_INTERACTIONS = ["read", "vread", "update", "patch", "delete", "history-instance"]
TYPE_INTERACTIONS = ["history-type", "create"]
OPERATIONS = {"Observation": [("lastn", "http://hl7.org/fhir/OperationDefinition/Observation-lastn")]}


def _resource(type_: str) -> dict[str, Any]:
    params = search_params(type_)
    interactions = INSTANCE_INTERACTIONS + TYPE_INTERACTIONS + (["search-type"] if params else [])
    r: dict[str, Any] = {
        "type": type_,
        "interaction": [{"code": c} for c in interactions],
        "versioning": "versioned-update",
        "readHistory": True,
        "updateCreate": True,
        "conditionalCreate": bool(params),
        "conditionalRead": "not-supported",
        "conditionalUpdate": bool(params),
        "conditionalDelete": "single" if params else "not-supported",
    }
    if params:
        refs = [p for p in params.values() if p.type == "reference"]
        r["searchInclude"] = [f"{type_}:{p.name}" for p in refs]
        r["searchRevInclude"] = sorted({f"{o}:{p.name}" for o in _types_referencing(type_) for p in _refs_to(o, type_)})
        r["searchParam"] = [{"name": p.name, "type": p.type, **({"documentation": p.description} if p.description else {})}
                            for p in params.values()]
    if type_ in OPERATIONS:
        r["operation"] = [{"name": n, "definition": d} for n, d in OPERATIONS[type_]]
    return r


def _refs_to(owner: str, target: str) -> list[Any]:
    return [p for p in search_params(owner).values()
            if p.type == "reference" and (not p.target_types or target in p.target_types)]


@cache
def _types_referencing(target: str) -> tuple[str, ...]:
    from fhir_server.search.registry import searchable_types

    return tuple(t for t in searchable_types() if _refs_to(t, target))


@cache
def _statement(base_url: str) -> dict[str, Any]:
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": "2026-11-28",
        "publisher": "Vitalgate",
        "kind": "instance",
        "software": SOFTWARE,
        "implementation": {"description": "Vitalgate edge FHIR server", "url": base_url},
        "fhirVersion": "4.3.0",
        "format": ["application/fhir+json", "json"],
        "patchFormat": ["application/json-patch+json"],
        "rest": [{
            "mode": "server",
            "resource": [_resource(t) for t in resource_types()],
            "interaction": [{"code": "transaction"}, {"code": "batch"}, {"code": "history-system"}],
        }],
    }


def capability_statement(base_url: str, mode: str | None = None) -> dict[str, Any]:
    return _statement(base_url)
