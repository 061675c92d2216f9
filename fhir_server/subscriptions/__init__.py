"""Topic-based subscriptions (FHIR R4B with the Subscriptions R5 Backport IG), fed by the change log.

Flow::

    change_log ─▶ Matcher (registry of compiled topics and filters; numbers each matching
                  event and commits it with its cursor)
               ─▶ Delivery (one worker per Subscription: ordered, at-least-once, backoff,
                  error/recovery) ─▶ rest-hook POST  |  websocket (bind-with-token)
    change_log ─▶ InternalSubscriber (in-process, own cursor, matched resources directly)

Modules: ``topics`` (SubscriptionTopic ▶ triggers; the shipped topics), ``criteria`` (query
criteria evaluated in memory on ``extract_index`` rows), ``model`` (Subscription ▶ spec and
validation), ``registry``, ``matcher``, ``delivery``, ``channels``, ``notifications``
(Bundles), ``operations`` ($status, $events, $get-ws-binding-token, write hook),
``websocket``, ``internal``, ``service`` (wiring), ``schema`` (tables). See docs/subscriptions.md.
"""

from .delivery import DeliveryPolicy
from .internal import Batch, InternalSubscriber, Matched
from .service import SubscriptionService, install_topics, subscription_service
from .topics import TOPIC_BASE, shipped_topics

__all__ = [
    "TOPIC_BASE",
    "Batch",
    "DeliveryPolicy",
    "InternalSubscriber",
    "Matched",
    "SubscriptionService",
    "install_topics",
    "shipped_topics",
    "subscription_service",
]
