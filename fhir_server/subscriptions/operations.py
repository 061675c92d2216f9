"""FHIR operations and the Subscription write hook (Backport IG).

- ``Subscription/[id]/$status`` and ``Subscription/$status?id=..``: a ``searchset`` Bundle of
  SubscriptionStatus (``query-status``) with the status, ``eventsSinceSubscriptionStart``
  and the last delivery error.
- ``Subscription/[id]/$events?eventsSinceNumber=&eventsUntilNumber=&content=``: the stored
  events of that range as a notification Bundle (``query-event``), for replay.
- ``Subscription/[id]/$get-ws-binding-token`` and ``Subscription/$get-ws-binding-token?id=..``:
  a token to bind websocket subscriptions, with the websocket URL.
- The write hook refuses Subscriptions this server cannot serve (422 with an
  OperationOutcome saying why) and sets ``requested`` on create: activation is ours.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

from fhir_server.core import Extensions, FhirRequest, FhirResponse, Operation, OperationCall
from fhir_server.core.crud import read, read_version
from fhir_server.errors import bad_request, unprocessable
from fhir_server.storage import loads, us_to_instant

from .events import find_topic, load_events
from .model import SubscriptionInvalid, SubscriptionSpec, parse_subscription
from .notifications import Event, notification, status_resource

if TYPE_CHECKING:
    from .service import SubscriptionService

BACKPORT_OPS = "http://hl7.org/fhir/uv/subscriptions-backport/OperationDefinition/"
MAX_EVENTS = 1000


def register(ext: Extensions, svc: SubscriptionService) -> None:
    ops = Operations(svc)
    for level in ("instance", "type"):
        ext.add_operation(Operation("status", level, ops.status, "Subscription",
                                    definition=BACKPORT_OPS + "backport-subscription-status"))
        ext.add_operation(Operation("get-ws-binding-token", level, ops.ws_token, "Subscription",
                                    definition=BACKPORT_OPS + "backport-subscription-get-ws-binding-token"))
    ext.add_operation(Operation("events", "instance", ops.events, "Subscription",
                                definition=BACKPORT_OPS + "backport-subscription-events"))
    ext.add_write_hook("Subscription", ops.check_subscription)


def _ids(call: OperationCall) -> list[str]:
    if call.id is not None:
        return [call.id]
    ids = [i for v in call.parameters.get("id", []) for i in str(v).split(",") if i]
    if not ids:
        raise bad_request("give the subscriptions as id parameters", ["id"])
    return ids


def _int_param(call: OperationCall, name: str) -> int | None:
    vals = call.parameters.get(name)
    if not vals:
        return None
    try:
        v = int(vals[0])
    except (TypeError, ValueError):
        raise bad_request(f"{name} must be an integer, got {vals[0]!r}", [name]) from None
    if v < 0:
        raise bad_request(f"{name} must not be negative", [name])
    return v


class Operations:
    def __init__(self, svc: SubscriptionService) -> None:
        self.svc = svc

    async def _spec(self, db: Any, sub_id: str) -> tuple[SubscriptionSpec, dict[str, Any]]:
        res = loads((await read(db, "Subscription", sub_id)).body)
        spec = self.svc.registry.subs.get(sub_id)
        if spec is None:  # written moments ago: the matcher has not applied it yet
            try:
                spec = replace(parse_subscription(res, self.svc.registry.topics), id=sub_id)
            except SubscriptionInvalid as exc:
                raise unprocessable(f"Subscription/{sub_id} cannot be served: {exc}") from None
        return replace(spec, status=res.get("status", spec.status)), res

    async def status(self, call: OperationCall) -> FhirResponse:
        entries = []
        for sub_id in _ids(call):
            spec, res = await self._spec(call.db, sub_id)
            error = res.get("error") or self.svc.last_error(sub_id)
            st = status_resource(spec, "query-status", await self.svc.events_since(sub_id), base=call.ctx.base_url,
                                 error=error)
            entries.append({"fullUrl": f"urn:uuid:status-{sub_id}", "resource": st, "search": {"mode": "match"}})
        return FhirResponse(200, {"resourceType": "Bundle", "type": "searchset", "total": len(entries),
                                  "entry": entries})

    async def events(self, call: OperationCall) -> FhirResponse:
        spec, _ = await self._spec(call.db, str(call.id))
        since = _int_param(call, "eventsSinceNumber") or 1
        until = _int_param(call, "eventsUntilNumber")
        content = (call.parameters.get("content") or [spec.content])[0]
        if content not in ("empty", "id-only", "full-resource"):
            raise bad_request(f"content must be empty, id-only or full-resource, got {content!r}", ["content"])
        await self.svc.matcher.settled()
        total = await self.svc.events_since(spec.id)
        events: list[Event] = await load_events(self.svc.store, spec.id, since - 1, until, MAX_EVENTS,
                                                bodies=content == "full-resource")
        body = notification(replace(spec, content=content), "query-event", total, events, call.ctx.base_url)
        return FhirResponse(200, body)

    async def ws_token(self, call: OperationCall) -> FhirResponse:
        ids = _ids(call)
        for sub_id in ids:
            spec, _ = await self._spec(call.db, sub_id)
            if spec.channel != "websocket":
                raise unprocessable(f"Subscription/{sub_id} is not a websocket subscription")
        token, expires = self.svc.hub.issue(ids)
        ws_url = self.svc.websocket_url(call.ctx.base_url)
        params: list[dict[str, Any]] = [
            {"name": "token", "valueString": token},
            {"name": "expiration", "valueDateTime": us_to_instant(int(expires * 1_000_000))},
            *({"name": "subscription", "valueString": i} for i in ids),
            {"name": "websocket-url", "valueUrl": ws_url},
        ]
        return FhirResponse(200, {"resourceType": "Parameters", "parameter": params})

    # -- the write hook ---------------------------------------------------------------------
    async def check_subscription(self, tx: Any, req: FhirRequest, _type: str, res: dict[str, Any]
                                 ) -> dict[str, Any]:
        topics = dict(self.svc.registry.topics)
        url = res.get("criteria")
        if isinstance(url, str) and url not in topics:
            topic = await find_topic(tx, url)
            if topic is not None:
                topics[url] = topic
        try:
            parse_subscription(res, topics)
        except SubscriptionInvalid as exc:
            raise unprocessable(f"Subscription refused: {exc}", [exc.expression]) from None
        status = res.get("status")
        parts = req.parts
        current = None
        if req.method in ("PUT", "PATCH") and len(parts) == 2:
            cur = await read_version(tx, "Subscription", parts[1])
            current = None if cur is None or cur.deleted else loads(cur.body).get("status")
        if status == "off":
            return res
        if current is not None and status == current:
            return res  # unchanged (e.g. an edit of the headers): keep the server-managed state
        out = {k: v for k, v in res.items() if k != "error"}
        out["status"] = "requested"
        return out
