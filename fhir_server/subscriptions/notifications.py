"""Notification Bundles (Backport IG, R4B): ``history`` Bundles led by a SubscriptionStatus.

The first entry is the SubscriptionStatus (https://hl7.org/fhir/R4B/subscriptionstatus.html)
with the notification ``type`` (handshake, heartbeat, event-notification, query-status,
query-event), ``eventsSinceSubscriptionStart`` and one ``notificationEvent`` per event with its
``eventNumber`` (strings in R4B). Then, per the payload content, nothing (``empty``), an
entry with the focus's ``fullUrl`` and request (``id-only``) or the stored version itself
(``full-resource``). Stored bodies are embedded as ``orjson.Fragment``: never re-parsed.
"""

from __future__ import annotations

import itertools
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import orjson

from fhir_server.storage import now_us, us_to_instant

from .model import SubscriptionSpec

_METHOD = {"create": ("POST", "201"), "update": ("PUT", "200"), "delete": ("DELETE", "204")}


@dataclass(slots=True)
class Event:
    """One numbered event of one subscription; ``body`` is the focus version as stored.

    Not frozen: a frozen dataclass sets each field through ``object.__setattr__`` (~1.2 us an
    Event against ~0.2 us), and the matcher makes one per matching subscription (1,000 for one
    change in a 1,000-way fan-out). Treat it as read-only."""

    number: int
    seq: int
    type: str
    res_id: str
    version: int
    vid: int
    op: str
    ts: int
    body: bytes | None = None


def status_resource(spec: SubscriptionSpec, kind: str, since_start: int, events: Sequence[Event] = (),
                    base: str = "", status: str | None = None, error: str | None = None) -> dict[str, Any]:
    st: dict[str, Any] = {
        "resourceType": "SubscriptionStatus",
        "status": status or spec.status,
        "type": kind,
        "eventsSinceSubscriptionStart": str(since_start),
        "subscription": {"reference": f"{base}/Subscription/{spec.id}" if base else f"Subscription/{spec.id}"},
        "topic": spec.topic.url,
    }
    if events:
        st["notificationEvent"] = [_event(e, spec.content, base) for e in events]
    if error:
        st["error"] = [{"text": error}]
    return st


@lru_cache(maxsize=4096)
def _instant(us: int) -> str:
    return us_to_instant(us)  # the same event goes to every matching subscription: format it once


def _event(e: Event, content: str, base: str) -> dict[str, Any]:
    ne: dict[str, Any] = {"eventNumber": str(e.number), "timestamp": _instant(e.ts)}
    if content != "empty":
        ne["focus"] = {"reference": _full_url(base, e)}
    return ne


def _full_url(base: str, e: Event) -> str:
    return f"{base}/{e.type}/{e.res_id}" if base else f"{e.type}/{e.res_id}"


@lru_cache(maxsize=1024)
def _entry_json(base: str, content: str, type_: str, res_id: str, version: int, op: str,
                body: bytes | None) -> bytes:
    """The focus entry, serialised once per event and content: a 1,000-way fan-out shares it."""
    method, status = _METHOD.get(op, ("PUT", "200"))
    entry: dict[str, Any] = {"fullUrl": f"{base}/{type_}/{res_id}" if base else f"{type_}/{res_id}"}
    if content == "full-resource" and body is not None and op != "delete":
        entry["resource"] = orjson.Fragment(body)
    entry["request"] = {"method": method, "url": type_ if method == "POST" else f"{type_}/{res_id}"}
    entry["response"] = {"status": status, "etag": f'W/"{version}"'}
    return orjson.dumps(entry)


@lru_cache(maxsize=4096)
def _event_tail(base: str, content: str, type_: str, res_id: str, ts: int) -> bytes:
    """A ``notificationEvent`` after its number: the same for every subscription the event matched."""
    tail: dict[str, Any] = {"timestamp": _instant(ts)}
    if content != "empty":
        tail["focus"] = {"reference": f"{base}/{type_}/{res_id}" if base else f"{type_}/{res_id}"}
    return b'",' + orjson.dumps(tail)[1:]


@lru_cache(maxsize=8192)
def _status_json(sub_id: str, base: str, topic: str, status: str, kind: str) -> tuple[bytes, bytes, bytes]:
    """A subscription's pieces of the status entry: up to its count, after it, and the entry's end."""
    ref = f"{base}/Subscription/{sub_id}" if base else f"Subscription/{sub_id}"
    head = (b'","resource":{"resourceType":"SubscriptionStatus","status":' + orjson.dumps(status)
            + b',"type":' + orjson.dumps(kind) + b',"eventsSinceSubscriptionStart":"')
    members = b'",' + orjson.dumps({"subscription": {"reference": ref}, "topic": topic})[1:-1]
    end = (b'},"request":' + orjson.dumps({"method": "GET", "url": f"Subscription/{sub_id}/$status"})
           + b',"response":{"status":"200"}}')
    return head, members, end


_ID_PREFIX = uuid.uuid4().hex[:20]  # per process; with a counter: unique, UUID-shaped ids without os.urandom
_ID_HEAD = f"{_ID_PREFIX[:8]}-{_ID_PREFIX[8:12]}-4{_ID_PREFIX[13:16]}-a{_ID_PREFIX[17:20]}-".encode()
_ids = itertools.count(1)


def _unique_id() -> bytes:
    return _ID_HEAD + b"%012x" % (next(_ids) & 0xFFFF_FFFF_FFFF)


@lru_cache(maxsize=4)
def _second(s: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(s))


def _now_instant() -> str:
    us = now_us()
    return f"{_second(us // 1_000_000)}.{us % 1_000_000:06d}+00:00"


def _shared(base: str, content: str, events: Sequence[Event]) -> tuple[list[bytes], bytes]:
    """What a notification of ``events`` shares with every other subscription's: each event's
    ``notificationEvent`` after its number, and the focus entries with the Bundle's end."""
    tails = [_event_tail(base, content, e.type, e.res_id, e.ts) for e in events]
    entries = b"" if content == "empty" else b"".join(
        b"," + _entry_json(base, content, e.type, e.res_id, e.version, e.op, e.body) for e in events)
    return tails, entries + b"]}"


def _timestamp() -> bytes:
    return b'","type":"history","timestamp":"' + _now_instant().encode() + b'","entry":[{"fullUrl":"urn:uuid:'


def _assemble(spec: SubscriptionSpec, kind: str, since_start: int, events: Sequence[Event], base: str,
              status: str | None, error: str | None, stamp: bytes, shared: tuple[list[bytes], bytes]) -> bytes:
    head, members, end = _status_json(spec.id, base, spec.topic.url, status or spec.status, kind)
    parts = [b'{"resourceType":"Bundle","id":"', _unique_id(), stamp, _unique_id(), head,
             str(since_start).encode(), members]
    if events:
        sep = b',"notificationEvent":[{"eventNumber":"'
        for e, tail in zip(events, shared[0], strict=True):
            parts += (sep, str(e.number).encode(), tail)
            sep = b',{"eventNumber":"'
        parts.append(b"]")
    if error:
        parts += (b',"error":[{"text":', orjson.dumps(error), b"}]")
    parts += (end, shared[1])
    return b"".join(parts)


def notification(spec: SubscriptionSpec, kind: str, since_start: int, events: Sequence[Event] = (),
                 base: str = "", status: str | None = None, error: str | None = None) -> bytes:
    """The serialised Bundle for one notification.

    Built from byte pieces rather than one ``orjson.dumps`` of a dict: in a fan-out only the
    subscription's own members (id, status, event numbers) differ, and every other piece (the
    focus entries, each event's timestamp and focus, the subscription's reference) is
    serialised once and cached. The same members in the same order as ``status_resource``."""
    return _assemble(spec, kind, since_start, events, base, status, error, _timestamp(),
                     _shared(base, spec.content, events))


class FanOutRenderer:
    """The event notifications of one fan-out pass: the Bundle's timestamp is taken once for the
    pass, and what subscriptions with the same events and payload content share (event tails,
    focus entries) is joined once, so each subscription's Bundle is its own status members and
    numbers spliced around those pieces."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.stamp = _timestamp()
        self._shared: dict[tuple[str, tuple[int, ...]], tuple[list[bytes], bytes]] = {}

    def render(self, spec: SubscriptionSpec, since_start: int, events: Sequence[Event]) -> bytes:
        key = (spec.content, tuple([e.seq for e in events]))
        shared = self._shared.get(key)
        if shared is None:
            shared = self._shared[key] = _shared(self.base, spec.content, events)
        return _assemble(spec, "event-notification", since_start, events, self.base, None, None, self.stamp,
                         shared)
