"""FHIR operations on alerts: ``$acknowledge``, ``$resolve`` and ``$mark-false`` on a DetectedIssue.

``POST [base]/DetectedIssue/{id}/$acknowledge`` (likewise ``$resolve``, ``$mark-false``) with an
optional ``Parameters`` body:

=========  ==============================================  ===========================================
name       value                                           meaning
=========  ==============================================  ===========================================
who        valueReference (Practitioner/PractitionerRole)  who acted; required.  A valueString
           or valueString                                  ``Practitioner/7`` is read as a reference,
                                                           any other text as a display-only author
note       valueString                                     optional, kept as ``mitigation.action.text``
when       valueDateTime / valueInstant with a zone        optional, default: now
=========  ==============================================  ===========================================

Effects (ARCHITECTURE.md "Alerts"): acknowledge adds a ``mitigation`` (action ``acknowledged``,
date, author) and the alert stays ``preliminary``; resolve sets ``final`` and
``identifiedPeriod.end``; mark-false sets ``entered-in-error`` (also allowed on an alert already
resolved, so a false alarm can be withdrawn after the fact).  Resolve and mark-false record who
did it as a mitigation too.  The answer is the new DetectedIssue version (200, ETag).

Each runs inside the writer transaction: it reads the stored version and writes the next with
``If-Match`` on it, so it serialises with the engine's own writes.  The alerting consumer learns of
the change from the change log; an alert closed here is never reopened by the engine.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from fhir_server.core import Extensions, FhirResponse, Operation, OperationCall
from fhir_server.core.crud import read
from fhir_server.core.render import written
from fhir_server.errors import bad_request, conflict, unprocessable
from fhir_server.storage import loads
from inference import AlertState, acknowledge, alert_from_detected_issue, mark_false_alarm, resolve
from inference.fhir import detected_issue

from .consumer import _is_ours

Transition = Callable[[AlertState, str, datetime, str | None], AlertState]
DEFINITION = "urn:vitalgate:OperationDefinition:DetectedIssue-{}"
_REFERENCE = re.compile(r"^(Practitioner|PractitionerRole)/[A-Za-z0-9\-.]{1,64}$")
_MAX_TEXT = 1000

# operation name -> (transition, statuses it may start from)
ACTIONS: dict[str, tuple[Transition, frozenset[str]]] = {
    "acknowledge": (acknowledge, frozenset({"preliminary"})),
    "resolve": (resolve, frozenset({"preliminary"})),
    "mark-false": (mark_false_alarm, frozenset({"preliminary", "final"})),
}


def register_operations(extensions: Extensions) -> None:
    for name in ACTIONS:
        extensions.add_operation(Operation(name, "instance", _handler(name), "DetectedIssue",
                                           methods=("POST",), writes=True, definition=DEFINITION.format(name)))


def _handler(name: str) -> Callable[[OperationCall], Any]:
    async def handler(call: OperationCall) -> FhirResponse:
        return await _act(call, name)

    return handler


async def _act(call: OperationCall, name: str) -> FhirResponse:
    transition, allowed = ACTIONS[name]
    who, note, when = _who(call.parameters), _text(call.parameters, "note"), _when(call.parameters)
    assert call.id is not None  # instance level
    stored = await read(call.db, "DetectedIssue", call.id)
    resource = loads(stored.body)
    if not _is_ours(resource):
        raise unprocessable(f"DetectedIssue/{call.id} was not raised by the alerting engine")
    state = alert_from_detected_issue(resource)
    if state.status not in allowed:
        raise conflict(f"DetectedIssue/{call.id} is {state.status}: ${name} needs {' or '.join(sorted(allowed))}")
    if call.parameters.get("when") and when < state.started:  # the default (now) may trail a device clock
        raise bad_request(f"'when' {when.isoformat()} is before the alert started", ["Parameters.parameter:when"])
    new = detected_issue(transition(state, who, when, note))
    pending = call.db.put("DetectedIssue", call.id, new, method="PUT", if_match=stored.version)
    await call.db.flush()
    return written(call.req, call.ctx.base_url, pending.written(), status=200)


def _one(params: dict[str, list[Any]], name: str) -> Any:
    values = params.get(name) or []
    if len(values) > 1:
        raise bad_request(f"parameter {name!r} given {len(values)} times", [f"Parameters.parameter:{name}"])
    return values[0] if values else None


def _who(params: dict[str, list[Any]]) -> str:
    value = _one(params, "who")
    if isinstance(value, dict):
        ref = value.get("reference")
        if not isinstance(ref, str) or not _REFERENCE.match(ref):
            raise bad_request("'who' must reference a Practitioner or PractitionerRole", ["Parameters.parameter:who"])
        return ref
    if isinstance(value, str) and value.strip() and len(value) <= _MAX_TEXT:
        return value.strip()
    raise bad_request("'who' is required: a Practitioner reference (valueReference) or a name (valueString)",
                      ["Parameters.parameter:who"])


def _text(params: dict[str, list[Any]], name: str) -> str | None:
    value = _one(params, name)
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > _MAX_TEXT:
        raise bad_request(f"'{name}' must be a string of at most {_MAX_TEXT} characters",
                          [f"Parameters.parameter:{name}"])
    return value.strip() or None


def _when(params: dict[str, list[Any]]) -> datetime:
    value = _one(params, "when")
    if value is None:
        return datetime.now(UTC)
    try:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        parsed = None
    if parsed is None or parsed.tzinfo is None:
        raise bad_request("'when' must be a dateTime with a time zone", ["Parameters.parameter:when"])
    return parsed
