"""Plug-in points for features built on the core: FHIR operations and write hooks.

Subscriptions, alerting and later SMART authorization add behaviour here instead of
editing the router: an ``Extensions`` object is built at start-up (``gateway.app``), passed
to ``create_app`` and carried in ``ServerContext``. The CapabilityStatement reads the same
object, so an operation that is registered is listed, and one that is not is not.

Operations (https://hl7.org/fhir/R4B/operations.html) are invoked as ``[base]/$name``,
``[base]/Type/$name`` or ``[base]/Type/id/$name``. A handler that ``writes`` runs inside the
writer transaction (``call.db`` is the ``WriteTx``), so its effects commit atomically.

Write hooks run before a resource of their type is stored by create, update, conditional
update or patch, inside the same transaction; they may reject it with a ``FhirError`` or
return an amended resource (for example a Subscription forced to ``requested``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from fhir_server.errors import bad_request

from .request import FhirRequest, FhirResponse

Level = Literal["system", "type", "instance"]


@dataclass
class OperationCall:
    """One invocation: request, context, database handle (Store for reads, WriteTx for writes)."""

    req: FhirRequest
    ctx: Any  # ServerContext (not imported: it imports this module)
    db: Any
    resource_type: str | None
    id: str | None
    parameters: dict[str, list[Any]]  # query parameters and Parameters.parameter values, by name


OperationHandler = Callable[[OperationCall], Awaitable[FhirResponse]]
WriteHook = Callable[[Any, FhirRequest, str, dict[str, Any]], Awaitable[dict[str, Any]]]


@dataclass(frozen=True)
class Operation:
    name: str  # without the leading "$"
    level: Level
    handler: OperationHandler
    resource_type: str | None = None  # None only for system level
    methods: tuple[str, ...] = ("GET", "POST")
    writes: bool = False
    definition: str | None = None  # canonical OperationDefinition URL for the CapabilityStatement


@dataclass
class Extensions:
    operations: dict[tuple[str | None, Level, str], Operation] = field(default_factory=dict)
    write_hooks: dict[str, list[WriteHook]] = field(default_factory=dict)

    def add_operation(self, op: Operation) -> None:
        if (op.level == "system") != (op.resource_type is None):
            raise ValueError(f"${op.name}: system operations have no type, others need one")
        self.operations[(op.resource_type, op.level, op.name)] = op

    def add_write_hook(self, resource_type: str, hook: WriteHook) -> None:
        self.write_hooks.setdefault(resource_type, []).append(hook)

    def find(self, resource_type: str | None, level: Level, name: str) -> Operation | None:
        return self.operations.get((resource_type, level, name))

    def for_type(self, resource_type: str) -> list[Operation]:
        return sorted((op for op in self.operations.values() if op.resource_type == resource_type),
                      key=lambda op: (op.name, op.level))

    def system_operations(self) -> list[Operation]:
        return sorted((op for op in self.operations.values() if op.level == "system"), key=lambda op: op.name)

    async def before_write(self, tx: Any, req: FhirRequest, type_: str, res: dict[str, Any]) -> dict[str, Any]:
        for hook in self.write_hooks.get(type_, ()):
            res = await hook(tx, req, type_, res)
        return res


def operation_parameters(req: FhirRequest, body: Any) -> dict[str, list[Any]]:
    """Merge query parameters and a ``Parameters`` body into name → values.

    A primitive parameter contributes its ``value[x]``, a resource parameter its resource,
    and a parameter with parts the part list itself.
    """
    out: dict[str, list[Any]] = {}
    for k, v in req.params:
        out.setdefault(k, []).append(v)
    if body is None:
        return out
    if not isinstance(body, dict) or body.get("resourceType") != "Parameters":
        raise bad_request("An operation body must be a Parameters resource", code="structure")
    for p in body.get("parameter") or []:
        name = p.get("name") if isinstance(p, dict) else None
        if not isinstance(name, str):
            raise bad_request("Every Parameters.parameter needs a name", code="structure")
        value: Any = p.get("resource")
        if value is None:
            value = next((v for k, v in p.items() if k.startswith("value")), None)
        if value is None:
            value = p.get("part")
        out.setdefault(name, []).append(value)
    return out
