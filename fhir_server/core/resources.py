"""Which resource types exist (R4B), and validation of incoming resources with fhir.resources."""

from __future__ import annotations

import pkgutil
from functools import cache
from typing import Any

import fhir.resources.R4B as r4b
from fhir.resources.R4B import get_fhir_model_class
from pydantic import ValidationError

from fhir_server.errors import FhirError, bad_request, not_found, unprocessable
from fhir_server.storage import loads

from . import shapes


@cache
def resource_types() -> tuple[str, ...]:
    """Every R4B resource type (from the fhir.resources model classes)."""
    from fhir.resources.R4B.resource import Resource

    names = []
    for mod in pkgutil.iter_modules(r4b.__path__):
        try:
            module = __import__(f"fhir.resources.R4B.{mod.name}", fromlist=["_"])
        except Exception:  # noqa: BLE001, S112 - skip helper modules that do not import alone
            continue
        for attr, value in vars(module).items():
            if isinstance(value, type) and issubclass(value, Resource) and attr.lower() == mod.name:
                names.append(attr)
    return tuple(sorted(set(names) - {"Resource", "DomainResource"}))


@cache
def _known() -> frozenset[str]:
    """``resource_types()`` as a set: each request checks its type against ~150 names."""
    return frozenset(resource_types())


def check_type(type_: str) -> None:
    if type_ not in _known():
        raise not_found(f"Unknown resource type '{type_}'")


def parse_json(body: bytes | None) -> Any:
    if not body:
        raise bad_request("Request body is empty")
    try:
        return loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise bad_request(f"Body is not valid JSON: {exc}", code="structure") from exc


def validate(resource: Any, expected_type: str | None = None, *, status: int = 400,
             check_empty: bool = True) -> dict[str, Any]:
    """Check structure with fhir.resources R4B; return the resource dict as received.

    ``check_empty`` False: the caller built ``resource`` (a Bundle without its entries' resources)
    and checks empty members itself."""
    if not isinstance(resource, dict):
        raise bad_request("A FHIR resource must be a JSON object", code="structure")
    rt = resource.get("resourceType")
    if not isinstance(rt, str) or rt not in _known():
        raise bad_request(f"Unknown or missing resourceType {rt!r}", ["resourceType"])
    if expected_type is not None and rt != expected_type:
        raise bad_request(f"resourceType {rt} does not match the URL type {expected_type}", ["resourceType"])
    leaves: list[Any] = []
    sig = shapes.shape(resource, leaves)
    if shapes.passes(rt, sig, leaves):  # a shape validated before: its primitive values checked
        return resource
    # fhir.resources accepts these, but FHIR JSON does not; a shape holding one is never remembered,
    # so the shapes that pass above cannot hold one either
    empty = first_empty(resource, rt) if check_empty else None
    if empty is not None:
        raise empty_member(empty, status)
    try:
        get_fhir_model_class(rt).model_validate(resource)
    except ValidationError as exc:
        raise _invalid(rt, exc, status) from exc
    except (ValueError, TypeError) as exc:
        raise bad_request(f"Invalid {rt}: {exc}") from exc
    shapes.remember(rt, sig, resource)
    return resource


def empty_member(where: str, status: int = 400) -> FhirError:
    text = (f"Invalid {where.split('.', 1)[0]}: {where} is empty or null (FHIR JSON allows no empty object or "
            "array, and null only as a placeholder in an array of primitives)")
    return unprocessable(text, [where]) if status == 422 else bad_request(text, [where])


def first_empty(value: dict[str, Any], path: str) -> str | None:
    """The path of the first empty object, empty array or null member in ``value``, or None."""
    for key, member in value.items():
        where = f"{path}.{key}"
        if member is None or (type(member) in (dict, list) and not member):
            return where
        if type(member) is dict:
            found = first_empty(member, where)
            if found is not None:
                return found
        elif type(member) is list:
            for i, item in enumerate(member):  # a null item is allowed: primitives' extensions align with it
                if type(item) is dict:
                    found = first_empty(item, f"{where}[{i}]") if item else f"{where}[{i}]"
                    if found is not None:
                        return found
    return None


def _invalid(rt: str, exc: ValidationError, status: int) -> FhirError:
    errors = exc.errors()[:10]
    exprs = [".".join([rt, *(str(p) for p in e["loc"] if not str(p).startswith("function"))]) for e in errors]
    msgs = "; ".join(f"{x}: {e['msg']}" for x, e in zip(exprs, errors, strict=True))
    if status == 422:
        return unprocessable(f"Invalid {rt}: {msgs}", exprs)
    return bad_request(f"Invalid {rt}: {msgs}", exprs)
