"""Validation of a resource whose shape was validated before: its primitive values only.

fhir.resources validates a resource in two kinds of steps. The structural ones (which
elements may appear where, cardinality, choice types ``value[x]``, required elements, nulls
in lists, the model of each complex element) depend only on the resource's *shape*: its keys,
nesting, list lengths, JSON value types and the ``resourceType`` of nested resources. The
primitive ones (a ``code`` without spaces, a ``dateTime`` pattern, a ``positiveInt`` > 0)
depend on one value and the element's declared type. The structural steps run as Python
validators in fhir_core and were ~75% of a create's validation (~150 µs for a vital-sign
Observation); a monitor sends the same shape every time.

So the first resource of a shape is validated in full; if it passes, the shape is
remembered with, for each primitive value in traversal order, a validator of that element's
declared type (a pydantic ``TypeAdapter`` of the model field's annotation, so the same
checks). A later resource of the same shape only has its primitive values checked, each
(type, value) pair once (``final``, ``http://loinc.org`` recur). Anything the walk does not
understand leaves the shape uncached (always validated in full), and any failure of the fast
check is re-validated in full, so errors are reported exactly as before.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from functools import cache
from typing import Annotated, Any, get_args

from fhir.resources.R4B import get_fhir_model_class
from fhir_core.types import FhirBase
from pydantic import TypeAdapter
from pydantic.fields import FieldInfo

Check = Callable[[Any], Any]
_MAX_SHAPES = 4096
_MAX_VALUES = 65536
_shapes: dict[tuple[Any, ...], tuple[Check, ...] | None] = {}
# (check, type, value) that passed; Decimals by their text (1.0 == 1.00), types apart (1 == True)
_good: set[tuple[Check, type, Any] | None] = set()


class _Unknown(Exception):
    """The walk met something it does not model: leave the shape to full validation."""


def shape(value: dict[str, Any], leaves: list[Any]) -> Any:
    """A hashable shape of the object ``value``; its primitive values (and lists of them) go
    to ``leaves``. Primitive members are handled in the loop, not by a call each: they are
    most of a resource's members, and the calls were ~40% of the walk."""
    out = []
    for k, v in value.items():
        kind = type(v)
        if kind is dict:
            out.append((k, shape(v, leaves)))
        elif kind is list:
            out.append((k, _list_shape(v, leaves)))
        elif k == "resourceType":  # a nested resource's type picks its model
            out.append((k, v if kind is str else kind))
        else:
            leaves.append(v)
            out.append((k, kind))
    return tuple(out)


def _list_shape(items: list[Any], leaves: list[Any]) -> Any:
    if _objects(items):
        return ("items", tuple([shape(x, leaves) for x in items]))
    leaves.append(items)
    return ("list", tuple([type(x) for x in items]))


def _objects(items: list[Any]) -> bool:
    """A list of JSON objects (walked item by item), not a list of primitives (one value)."""
    return bool(items) and all([type(x) is dict for x in items])


def passes(resource_type: str, sig: Any, leaves: list[Any]) -> bool:
    """True if ``sig`` was validated before and every primitive value passes its type's check."""
    checks = _shapes.get((resource_type, sig))
    if checks is None:
        return False
    for check, value in zip(checks, leaves, strict=True):
        kind = type(value)
        key = None if kind is list else (check, kind, str(value) if kind is Decimal else value)
        if key in _good:
            continue
        try:
            check(value)
        except Exception:  # noqa: BLE001 - the full validation reports it
            return False
        if key is not None:
            if len(_good) >= _MAX_VALUES:
                _good.clear()
            _good.add(key)
    return True


def remember(resource_type: str, sig: Any, resource: dict[str, Any]) -> None:
    """Record the checks of a shape whose ``resource`` has just passed full validation."""
    if (resource_type, sig) in _shapes or len(_shapes) >= _MAX_SHAPES:
        return
    checks: list[Check] = []
    try:
        _walk(get_fhir_model_class(resource_type), resource, checks)
    except _Unknown:
        _shapes[(resource_type, sig)] = None
        return
    _shapes[(resource_type, sig)] = tuple(checks)


def _walk(model: Any, obj: dict[str, Any], checks: list[Check]) -> None:
    """The checks of ``obj``'s primitive values, in the order ``shape`` lists them."""
    fields = _fields(model)
    for key, value in obj.items():
        if key == "resourceType":
            continue
        field = fields.get(key)
        if field is None:
            raise _Unknown(key)
        if type(value) is dict:
            _walk(_element_model(field, value), value, checks)
        elif type(value) is list and _objects(value):
            for item in value:
                _walk(_element_model(field, item), item, checks)
        else:
            checks.append(_check(field))


@cache
def _fields(model: Any) -> dict[str, FieldInfo]:
    """A model's fields by alias and by name (the models accept both)."""
    out: dict[str, FieldInfo] = {}
    for name, field in model.model_fields.items():
        out[name] = field
        if field.alias:
            out[field.alias] = field
    return out


def _element_model(field: FieldInfo, value: dict[str, Any]) -> Any:
    """The model a complex element is validated with; a nested resource's by its resourceType."""
    types = _fhir_types(field.annotation)
    if len(types) != 1:
        raise _Unknown(field.alias)
    model = types[0].get_model_klass()
    if "resourceType" in value:
        rt = value["resourceType"]
        if not isinstance(rt, str) or getattr(model, "__resource_type__", None) not in ("Resource", rt):
            raise _Unknown(rt)
        model = get_fhir_model_class(rt)
    if not isinstance(model, type):
        raise _Unknown(field.alias)
    return model


def _fhir_types(annotation: Any) -> list[Any]:
    if isinstance(annotation, type) and issubclass(annotation, FhirBase):
        return [annotation]
    return [t for arg in get_args(annotation) for t in _fhir_types(arg)]


@cache
def _check(field: FieldInfo) -> Check:
    annotation: Any = Annotated[(field.annotation, *field.metadata)] if field.metadata else field.annotation
    return TypeAdapter(annotation).validate_python
