"""Tables owned by subscriptions, declared on the store's metadata so migrations and code agree.

- ``subscription_event``: one row per event that matched a subscription, numbered per
  subscription from 1 without gaps (the Backport IG's ``eventNumber``). Numbers are assigned
  and committed together with the matcher's change-log cursor, before anything is sent, so
  ``$events`` can replay any range and a restart never renumbers.

Each subscription's delivery position (the last event number written to its endpoint) is a
``consumer_cursor`` row named ``subscription:<id>``; the matcher's position is ``subscriptions``.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Index
from sqlmodel import Field, SQLModel

from fhir_server.storage.schema import Key, table_of

MATCHER_CURSOR = "subscriptions"


def delivery_cursor(sub_id: str) -> str:
    return f"subscription:{sub_id}"


class SubscriptionEventRow(SQLModel, table=True):
    __tablename__ = "subscription_event"
    __table_args__ = (Index("ux_subscription_event_number", "sub_id", "number", unique=True),)
    pk: int | None = Field(default=None, sa_column=Column(Key, primary_key=True, autoincrement=True))
    sub_id: str = Field(max_length=64)
    number: int = Field(sa_column=Column(BigInteger, nullable=False))
    seq: int = Field(sa_column=Column(BigInteger, nullable=False))  # change-log entry that matched
    type: str = Field(max_length=64)
    res_id: str = Field(max_length=64)
    version: int
    vid: int = Field(sa_column=Column(BigInteger, nullable=False))  # the focus version's body
    op: str = Field(max_length=8)
    ts: int = Field(sa_column=Column(BigInteger, nullable=False))  # when the change committed, epoch µs


subscription_event = table_of(SubscriptionEventRow)
TABLES = (subscription_event,)
