"""``alerting_service(node)``: the composition-root part that runs on-edge alerting.

It registers the alert operations (``$acknowledge``, ``$resolve``, ``$mark-false``) with the
node's FHIR extensions, loads the rule set (``VITALGATE_ALERT_RULESET``: a built-in name or a TOML
path) and the risk model (registry at ``VITALGATE_MODEL_DIR``, keys in
``VITALGATE_TRUSTED_KEYS_DIR``), the per-unit rule sets (``VITALGATE_ALERT_UNIT_RULESETS``),
and runs the change-log consumer until the node stops.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from inference import Engine, RuleSet, builtin_ruleset, builtin_ruleset_names, load_ruleset

from .consumer import AlertingConsumer
from .models import ModelSource
from .operations import register_operations
from .units import UnitRulesets, parse_unit_rulesets

log = logging.getLogger(__name__)


def ruleset_from_setting(value: str) -> RuleSet:
    """A built-in rule set by name, else a TOML file path (``RulesetError`` names what is wrong)."""
    if value in builtin_ruleset_names():
        return builtin_ruleset(value)
    return load_ruleset(Path(value))


@contextlib.asynccontextmanager
async def alerting_service(node: Any) -> AsyncIterator[AlertingConsumer]:
    settings = node.settings
    register_operations(node.extensions)
    engine = Engine(ruleset_from_setting(settings.alert_ruleset))
    by_unit = parse_unit_rulesets(settings.alert_unit_rulesets, ruleset_from_setting)
    models = ModelSource(settings.model_dir, settings.trusted_keys_dir)
    consumer = AlertingConsumer(node.store, engine, models=models,
                                units=UnitRulesets(node.store, engine, by_unit) if by_unit else None)
    await consumer.start()
    log.info("alerting: rule set %s %s, model %s, cursor %d, warmed %s", engine.default_ruleset.name,
             engine.default_ruleset.version, consumer.stats.model, consumer.stats.cursor, consumer.stats.warmed)
    try:
        yield consumer
    finally:
        await consumer.stop()
