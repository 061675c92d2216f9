"""Rule set per care unit: the unit a patient's monitor stands in chooses the rule set.

``VITALGATE_ALERT_UNIT_RULESETS="ICU=icu-limits,CCU=icu-limits"`` maps unit names (the point of
care, PV1-3.1, which the mappers store as the top ``Location`` of the bed's ``partOf`` chain) to
rule sets; a unit not listed, or a patient whose device has no location, gets the node's default
(``VITALGATE_ALERT_RULESET``).  The unit is found once per device from the stored Device's
``location`` (bed > room > unit) and cached; when a patient's readings come from another device
(a bed move), the unit is looked up again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from fhir_server.storage import Store, loads
from inference import Engine, InferenceError, RuleSet

log = logging.getLogger(__name__)
_MAX_DEPTH = 5


def parse_unit_rulesets(text: str, load: Callable[[str], RuleSet]) -> dict[str, RuleSet]:
    """``UNIT=ruleset,UNIT2=ruleset`` → {unit: RuleSet}; a clear error names the bad entry."""
    out: dict[str, RuleSet] = {}
    for entry in (e.strip() for e in text.split(",")):
        if not entry:
            continue
        unit, sep, name = entry.partition("=")
        if not sep or not unit.strip() or not name.strip():
            raise ValueError(f"VITALGATE_ALERT_UNIT_RULESETS: {entry!r} is not UNIT=ruleset")
        try:
            out[unit.strip()] = load(name.strip())
        except InferenceError as exc:
            raise ValueError(f"VITALGATE_ALERT_UNIT_RULESETS: {entry!r}: {exc}") from exc
    return out


def _ref(value: object, prefix: str) -> str | None:
    ref = value.get("reference") if isinstance(value, Mapping) else None
    return ref.removeprefix(prefix) if isinstance(ref, str) and ref.startswith(prefix) else None


class UnitRulesets:
    """Assigns each patient the rule set of the unit their device is in."""

    def __init__(self, store: Store, engine: Engine, by_unit: Mapping[str, RuleSet]):
        self.store, self.engine, self.by_unit = store, engine, dict(by_unit)
        self._unit_of_device: dict[str, str | None] = {}
        self._device_of_patient: dict[str, str] = {}

    async def observe(self, obs: Mapping[str, Any]) -> None:
        """Before an Observation is evaluated: (re)assign its patient when its device is new."""
        if not self.by_unit:
            return
        patient, device = _ref(obs.get("subject"), "Patient/"), _ref(obs.get("device"), "Device/")
        if patient is None or device is None or self._device_of_patient.get(patient) == device:
            return
        self._device_of_patient[patient] = device
        if device not in self._unit_of_device:
            self._unit_of_device[device] = await self._unit(device)
        unit = self._unit_of_device[device]
        ruleset = self.by_unit.get(unit) if unit is not None else None
        if ruleset is not None:
            self.engine.assign(patient, ruleset)
        else:
            self.engine.unassign(patient)

    async def _unit(self, device_id: str) -> str | None:
        stored = await self.store.read("Device", device_id)
        location = None if stored is None or stored.deleted else _ref(loads(stored.body).get("location"), "Location/")
        name = None
        for _ in range(_MAX_DEPTH):  # bed > room > unit: the top of the chain is the unit
            if location is None:
                break
            stored = await self.store.read("Location", location)
            if stored is None or stored.deleted:
                break
            body = loads(stored.body)
            name = body.get("name") if isinstance(body.get("name"), str) else name
            location = _ref(body.get("partOf"), "Location/")
        return name
