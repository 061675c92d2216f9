"""A Subscription resource (R4B, in the Backport IG's R4 shape) read into a ``SubscriptionSpec``.

Backport IG (http://hl7.org/fhir/uv/subscriptions-backport/): the topic's canonical URL is
``criteria``; filters are ``_criteria`` extensions ``backport-filter-criteria``
(``Observation?patient=Patient/1``); ``channel`` carries ``backport-heartbeat-period``,
``backport-timeout`` and ``backport-max-count``; ``_payload`` carries
``backport-payload-content`` (``empty`` | ``id-only`` | ``full-resource``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from .criteria import Criteria, CriteriaError
from .topics import Topic

BACKPORT = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/"
FILTER_EXT = BACKPORT + "backport-filter-criteria"
HEARTBEAT_EXT = BACKPORT + "backport-heartbeat-period"
TIMEOUT_EXT = BACKPORT + "backport-timeout"
MAX_COUNT_EXT = BACKPORT + "backport-max-count"
CONTENT_EXT = BACKPORT + "backport-payload-content"
CHANNELS = ("rest-hook", "websocket")
CONTENTS = ("empty", "id-only", "full-resource")
PAYLOAD_TYPES = ("application/fhir+json", "application/json")
DEFAULT_TIMEOUT = 10
DEFAULT_MAX_COUNT = 20


class SubscriptionInvalid(ValueError):
    """Why a Subscription cannot be accepted; ``expression`` points at the element."""

    def __init__(self, msg: str, expression: str) -> None:
        super().__init__(msg)
        self.expression = expression


@dataclass(frozen=True)
class SubscriptionSpec:
    id: str
    version: int
    status: str
    topic: Topic
    filters: tuple[Criteria, ...]
    channel: str
    endpoint: str | None
    headers: tuple[tuple[str, str], ...]
    content: str
    heartbeat: int | None  # seconds
    timeout: int  # seconds
    max_count: int
    start_seq: int = 0  # change-log seq of the subscription's creation: only later changes match

    def needles(self, type_: str) -> frozenset[bytes] | None:
        """Byte strings one of which any matching ``type_`` body must contain; None if unknown.

        Taken from one equality filter on a reference id or a token code: its value appears
        verbatim in the stored JSON (orjson escapes only quotes, backslashes and control
        characters, and values with those are not used). Lets the matcher skip most changes
        without parsing them.
        """
        for f in self.filters:
            if f.resource_type == type_:
                found = f.needles()
                if found is not None:
                    return found
        return None

    def accepts(self, type_: str, res: Any, seen: dict[str, bool] | None = None) -> bool:
        """Every filter on ``type_`` matches (filters on other trigger types do not apply).

        ``seen``: outcomes by filter text for this resource and topic, shared by the
        subscriptions that use the same filter (a 1,000-way fan-out often has a few distinct
        filters, and a filter costs several µs)."""
        for f in self.filters:
            if f.resource_type != type_:
                continue
            ok = None if seen is None else seen.get(f.text)
            if ok is None:
                ok = f.matches(res)
                if seen is not None:
                    seen[f.text] = ok
            if not ok:
                return False
        return True


def _ext(elem: Any, url: str) -> list[Any]:
    if not isinstance(elem, Mapping):
        return []
    return [e for e in elem.get("extension") or [] if isinstance(e, Mapping) and e.get("url") == url]


def _int_ext(channel: Mapping[str, Any], url: str, name: str, minimum: int) -> int | None:
    found = _ext(channel, url)
    if not found:
        return None
    e = found[0]
    v = next((v for k, v in e.items() if k.startswith("value")), None)
    if not isinstance(v, int) or isinstance(v, bool) or v < minimum:
        raise SubscriptionInvalid(f"{name} must be an integer >= {minimum}", f"Subscription.channel.extension({url})")
    return v


def _headers(channel: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    out = []
    for h in channel.get("header") or []:
        name, sep, value = str(h).partition(":")
        if not sep or not name.strip() or any(c in name for c in " \r\n") or "\n" in value or "\r" in value:
            raise SubscriptionInvalid(f"channel.header {h!r} is not 'Name: value'", "Subscription.channel.header")
        out.append((name.strip(), value.strip()))
    return tuple(out)


def _endpoint(channel_type: str, endpoint: Any) -> str | None:
    if channel_type != "rest-hook":
        return endpoint if isinstance(endpoint, str) else None
    parts = urlsplit(endpoint) if isinstance(endpoint, str) else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise SubscriptionInvalid(f"a rest-hook needs an absolute http(s) endpoint, got {endpoint!r}",
                                  "Subscription.channel.endpoint")
    return str(endpoint)


def parse_subscription(res: Mapping[str, Any], topics: Mapping[str, Topic], version: int = 0) -> SubscriptionSpec:
    """Read and check a Subscription; raises SubscriptionInvalid saying why it is refused."""
    url = res.get("criteria")
    topic = topics.get(url) if isinstance(url, str) else None
    if topic is None:
        raise SubscriptionInvalid(f"unknown SubscriptionTopic {url!r} in criteria", "Subscription.criteria")
    if topic.status not in ("active", "draft"):
        raise SubscriptionInvalid(f"SubscriptionTopic {url} is {topic.status}", "Subscription.criteria")
    filters = []
    for e in _ext(res.get("_criteria"), FILTER_EXT):
        text = e.get("valueString")
        try:
            filters.append(topic.compile_filter(str(text or "")))
        except CriteriaError as exc:
            raise SubscriptionInvalid(f"unsupported filter {text!r}: {exc}",
                                      "Subscription.criteria.extension") from None
    channel = res.get("channel") or {}
    ctype = channel.get("type")
    if ctype not in CHANNELS:
        raise SubscriptionInvalid(f"channel.type must be one of {', '.join(CHANNELS)}, got {ctype!r}",
                                  "Subscription.channel.type")
    payload = channel.get("payload")
    if payload is not None and payload not in PAYLOAD_TYPES:
        raise SubscriptionInvalid(f"channel.payload {payload!r} is not supported (use application/fhir+json)",
                                  "Subscription.channel.payload")
    content_ext = _ext(channel.get("_payload"), CONTENT_EXT)
    content = content_ext[0].get("valueCode") if content_ext else ("id-only" if payload else "empty")
    if content not in CONTENTS:
        raise SubscriptionInvalid(f"payload content must be one of {', '.join(CONTENTS)}, got {content!r}",
                                  "Subscription.channel.payload.extension")
    return SubscriptionSpec(
        id=str(res.get("id") or ""), version=version, status=str(res.get("status") or "requested"),
        topic=topic, filters=tuple(filters), channel=ctype, endpoint=_endpoint(ctype, channel.get("endpoint")),
        headers=_headers(channel), content=content,
        heartbeat=_int_ext(channel, HEARTBEAT_EXT, "heartbeat period", 1),
        timeout=_int_ext(channel, TIMEOUT_EXT, "timeout", 1) or DEFAULT_TIMEOUT,
        max_count=_int_ext(channel, MAX_COUNT_EXT, "max count", 1) or DEFAULT_MAX_COUNT,
    )
