"""The in-memory view the matcher works from: compiled topics and active subscriptions.

It is rebuilt from the database at start and then kept current by the change log itself:
the matcher applies every SubscriptionTopic and Subscription entry in log order, so what a
change matched is decided by the subscriptions that existed at that point of the log
(``SubscriptionSpec.start_seq``), the same before and after a restart.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from sqlalchemy import func, select

from fhir_server.search.registry import SearchParam
from fhir_server.storage import Change, Store, loads
from fhir_server.storage import schema as t

from .criteria import IndexedResource
from .model import SubscriptionInvalid, SubscriptionSpec, parse_subscription
from .topics import Topic, TopicError, compile_topic

log = logging.getLogger(__name__)
LIVE = ("requested", "active", "error")  # statuses that still number events


class Registry:
    def __init__(self) -> None:
        self.topics: dict[str, Topic] = {}
        self.topic_ids: dict[str, str] = {}  # SubscriptionTopic id -> url
        self.topic_versions: dict[str, int] = {}
        self.subs: dict[str, SubscriptionSpec] = {}
        self._by_type: dict[str, list[tuple[Topic, list[SubscriptionSpec]]]] | None = None
        self._local: dict[str, tuple[SearchParam, ...]] = {}
        self._needles: dict[str, frozenset[bytes] | None] = {}

    # -- loading and updates ------------------------------------------------------------------
    async def load(self, store: Store, as_of: int) -> None:
        """The topics and subscriptions as they were at change-log entry ``as_of``."""
        for id_, version, body, _ in await _as_of(store, "SubscriptionTopic", as_of):
            self.apply_topic(id_, version, loads(body))
        for id_, version, body, start in await _as_of(store, "Subscription", as_of):
            self.apply_subscription(id_, version, loads(body), start)

    def apply_topic(self, id_: str, version: int, res: Mapping[str, Any] | None) -> None:
        if self.topic_versions.get(id_, 0) > version:
            return  # replaying an older version after a restart
        self.topic_versions[id_] = version
        old = self.topic_ids.pop(id_, None)
        if old is not None:
            self.topics.pop(old, None)
        if res is not None:
            try:
                topic = compile_topic(res)
            except TopicError as exc:
                log.warning("SubscriptionTopic/%s ignored: %s", id_, exc)
            else:
                self.topics[topic.url] = topic
                self.topic_ids[id_] = topic.url
        self._by_type = None

    def apply_subscription(self, id_: str, version: int, res: Mapping[str, Any] | None,
                           start_seq: int) -> SubscriptionSpec | None:
        """Apply one version (None: deleted); older versions than the one held are ignored."""
        held = self.subs.get(id_)
        if held is not None and held.version > version:
            return held
        self._by_type = None
        if res is None:
            self.subs.pop(id_, None)
            return None
        try:
            spec = parse_subscription(res, self.topics, version)
        except SubscriptionInvalid as exc:
            log.warning("Subscription/%s ignored: %s", id_, exc)
            self.subs.pop(id_, None)
            return None
        start = held.start_seq if held is not None else start_seq
        spec = replace(spec, id=id_, start_seq=start)
        self.subs[id_] = spec
        return spec

    # -- matching -----------------------------------------------------------------------------
    def _index(self) -> dict[str, list[tuple[Topic, list[SubscriptionSpec]]]]:
        if self._by_type is None:
            by_topic: dict[str, list[SubscriptionSpec]] = {}
            for s in self.subs.values():
                if s.status in LIVE:
                    by_topic.setdefault(s.topic.url, []).append(s)
            by_type: dict[str, list[tuple[Topic, list[SubscriptionSpec]]]] = {}
            local: dict[str, set[SearchParam]] = {}
            for url, subs in by_topic.items():
                topic = self.topics.get(url, subs[0].topic)
                for rt in topic.resource_types:
                    by_type.setdefault(rt, []).append((topic, subs))
                    local.setdefault(rt, set()).update(p for p in topic.local_params if p.resource_type == rt)
            self._by_type = by_type
            self._local = {rt: tuple(ps) for rt, ps in local.items()}
            self._needles = {rt: _needles(rt, entries) for rt, entries in by_type.items()}
        return self._by_type

    def watches(self, type_: str) -> bool:
        return type_ in self._index()

    def needs_previous(self, type_: str) -> bool:
        return any(tr.needs_previous for topic, _ in self._index().get(type_, ())
                   for tr in topic.triggers if tr.resource_type == type_)

    def may_match(self, change: Change, body: bytes | None) -> bool:
        """A cheap necessary condition: False means no subscription can accept this change."""
        if change.type not in self._index():
            return False
        needles = self._needles.get(change.type)
        if needles is None or change.op == "delete" or body is None:
            return True
        return any(n in body for n in needles)

    def match(self, change: Change, cur: Mapping[str, Any] | None, prev: Mapping[str, Any] | None
              ) -> list[SubscriptionSpec]:
        """The subscriptions ``change`` is an event for, in registry order."""
        entries = self._index().get(change.type)
        if not entries:
            return []
        local = self._local.get(change.type, ())
        cur_idx = IndexedResource.of(change.type, cur, local) if cur is not None else None
        prev_idx = IndexedResource.of(change.type, prev, local) if prev is not None else None
        focus = cur_idx if cur_idx is not None else prev_idx
        out: list[SubscriptionSpec] = []
        for topic, subs in entries:
            fired = any(tr.fires(change.op, cur_idx, prev_idx, cur, prev)
                        for tr in topic.triggers if tr.resource_type == change.type)
            if not fired or focus is None:
                continue
            seen: dict[str, bool] = {}  # per topic: a topic-local parameter may differ between topics
            out.extend(s for s in subs if s.start_seq < change.seq and s.accepts(change.type, focus, seen))
        return out


def _needles(type_: str, entries: list[tuple[Topic, list[SubscriptionSpec]]]) -> frozenset[bytes] | None:
    out: set[bytes] = set()
    for _, subs in entries:
        for s in subs:
            found = s.needles(type_)
            if found is None:
                return None
            out |= found
    return frozenset(out)


async def _as_of(store: Store, type_: str, as_of: int) -> list[tuple[str, int, bytes, int]]:
    """(id, version, body, first seq) of the latest version at or before ``as_of``, deletions left out."""
    c, v = t.change_log.c, t.resource_version.c
    latest = (select(c.id.label("id"), func.max(c.seq).label("last"), func.min(c.seq).label("first"))
              .where(c.type == type_, c.seq <= as_of).group_by(c.id).subquery())
    stmt = (select(c.id, c.version, v.body, latest.c.first, c.op)
            .join(latest, c.seq == latest.c.last).join(t.resource_version, v.vid == c.vid))
    return [(r[0], int(r[1]), r[2], int(r[3])) for r in await store.fetch(stmt) if r[4] != "delete"]
