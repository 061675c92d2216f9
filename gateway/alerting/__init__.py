"""On-edge alerting in the running node: ``inference.Engine`` wired to the change log and the REST API.

Modules: ``consumer`` (the change-log consumer with its own durable cursor), ``operations``
(``$acknowledge`` / ``$resolve`` / ``$mark-false`` on DetectedIssue), ``models`` (which risk model
runs, hot swap from the signed registry), ``service`` (``alerting_service(node)`` for
``gateway.app``).  See docs/alerting.md.
"""

from __future__ import annotations

from .consumer import CONSUMER, AlertingConsumer, ConsumerStats, is_engine_input
from .models import ModelSource
from .operations import ACTIONS, register_operations
from .service import alerting_service, ruleset_from_setting

__all__ = [
    "ACTIONS",
    "CONSUMER",
    "AlertingConsumer",
    "ConsumerStats",
    "ModelSource",
    "alerting_service",
    "is_engine_input",
    "register_operations",
    "ruleset_from_setting",
]
