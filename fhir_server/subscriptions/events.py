"""Reading and counting stored events (``subscription_event``), for delivery backlogs and ``$events``."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from fhir_server.storage import Store, loads
from fhir_server.storage import schema as t

from .notifications import Event
from .schema import subscription_event
from .topics import Topic, TopicError, compile_topic


async def last_numbers(store: Store) -> dict[str, int]:
    """The highest event number of every subscription (``eventsSinceSubscriptionStart``)."""
    c = subscription_event.c
    rows = await store.fetch(select(c.sub_id, func.max(c.number)).group_by(c.sub_id))
    return {sub_id: int(n) for sub_id, n in rows}


async def last_number(store: Store, sub_id: str) -> int:
    c = subscription_event.c
    return int((await store.fetch(select(func.max(c.number)).where(c.sub_id == sub_id))).scalar() or 0)


async def delivered_positions(store: Store, prefix: str) -> dict[str, int]:
    c = t.consumer_cursor.c
    rows = await store.fetch(select(c.name, c.seq).where(c.name.startswith(prefix)))
    return {name[len(prefix):]: int(seq) for name, seq in rows}


async def load_events(store: Store, sub_id: str, after: int, until: int | None = None, limit: int = 100,
                      bodies: bool = True) -> list[Event]:
    """Events numbered ``after+1 .. until`` (at most ``limit``), oldest first, with their bodies."""
    c = subscription_event.c
    stmt = select(c.number, c.seq, c.type, c.res_id, c.version, c.vid, c.op, c.ts).where(
        c.sub_id == sub_id, c.number > after)
    if until is not None:
        stmt = stmt.where(c.number <= until)
    rows = list(await store.fetch(stmt.order_by(c.number).limit(limit)))
    found = await store.bodies([r[5] for r in rows if r[6] != "delete"]) if bodies and rows else {}
    return [Event(**r._mapping, body=found.get(r[5])) for r in rows]


async def find_topic(db: Any, url: str) -> Topic | None:
    """A SubscriptionTopic written since the registry last caught up (e.g. in the same minute)."""
    r, v, tok = t.resource.c, t.resource_version.c, t.INDEX_TABLES["token"].c
    stmt = (select(v.body).join(t.resource, r.vid == v.vid).join(t.INDEX_TABLES["token"], tok.rid == r.rid)
            .where(r.type == "SubscriptionTopic", r.deleted.is_(False), tok.param == "SubscriptionTopic.url",
                   tok.code == url).limit(1))
    row = (await db.fetch(stmt)).first()
    if row is None:
        return None
    try:
        return compile_topic(loads(row[0]))
    except TopicError:
        return None


