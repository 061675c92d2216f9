"""The CapabilityStatement, generated from the same registries that drive routing and indexing.

https://hl7.org/fhir/R4B/capabilitystatement.html
"""

from __future__ import annotations

from functools import cache
from typing import Any

from fhir_server.search.registry import search_params

from .extensions import Extensions, Operation
from .resources import resource_types

SOFTWARE = {"name": "Vitalgate", "version": "0.1.0"}
INSTANCE_INTERACTIONS = ["read", "vread", "update", "patch", "delete", "history-instance"]
TYPE_INTERACTIONS = ["history-type", "create"]
OPERATIONS = {"Observation": [("lastn", "http://hl7.org/fhir/OperationDefinition/Observation-lastn")]}
_BY_EXTENSIONS: dict[int, dict[str, Any]] = {}


def _resource(type_: str, ext: Extensions) -> dict[str, Any]:
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
        includes = [f"{type_}:{p.name}" for p in refs]
        revincludes = sorted({f"{o}:{p.name}" for o in _types_referencing(type_) for p in _refs_to(o, type_)})
        # FHIR JSON allows no empty arrays (a type without reference parameters has no includes)
        if includes:
            r["searchInclude"] = includes
        if revincludes:
            r["searchRevInclude"] = revincludes
        r["searchParam"] = [{"name": p.name, "type": p.type,
                             **({"documentation": p.description} if p.description else {})}
                            for p in params.values()]
    ops = [{"name": n, "definition": d} for n, d in OPERATIONS.get(type_, [])]
    ops += [_op(op) for op in ext.for_type(type_)]
    if ops:
        r["operation"] = ops
    return r


def _refs_to(owner: str, target: str) -> list[Any]:
    return [p for p in search_params(owner).values()
            if p.type == "reference" and (not p.target_types or target in p.target_types)]


@cache
def _types_referencing(target: str) -> tuple[str, ...]:
    from fhir_server.search.registry import searchable_types

    return tuple(t for t in searchable_types() if _refs_to(t, target))


def _op(op: Operation) -> dict[str, Any]:
    d: dict[str, Any] = {"name": op.name, "definition": op.definition or f"urn:vitalgate:operation:{op.name}"}
    return d


def _statement(base_url: str, ext: Extensions) -> dict[str, Any]:
    rest: dict[str, Any] = {
        "mode": "server",
        "resource": [_resource(t, ext) for t in resource_types()],
        "interaction": [{"code": "transaction"}, {"code": "batch"}, {"code": "history-system"}],
    }
    if ext.system_operations():
        rest["operation"] = [_op(op) for op in ext.system_operations()]
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
        "rest": [rest],
    }


def capability_statement(base_url: str, mode: str | None = None, ext: Extensions | None = None) -> dict[str, Any]:
    """Built once per (base URL, extensions) pair: extensions are fixed after start-up."""
    ext = ext or Extensions()
    key = hash((base_url, id(ext)))
    if key not in _BY_EXTENSIONS:
        _BY_EXTENSIONS[key] = _statement(base_url, ext)
    return _BY_EXTENSIONS[key]
