"""Blood-pressure panels: sys/dia/mean OBX of one family (same panel MDC code), parent path
and time become one Observation 85354-9 with components, the method coded by SNOMED CT."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..terminology import LOINC_SYSTEM, MDC_SYSTEM, SNOMED_SYSTEM, MdcTerm, mdc_term
from .fields import original_time_ext, resource_id

VITAL_SIGNS = {"coding": [{
    "system": "http://terminology.hl7.org/CodeSystem/observation-category",
    "code": "vital-signs", "display": "Vital Signs"}]}
_METHOD = {"noninvasive": ("17146006", "non-invasive"), "invasive": ("77938009", "invasive")}
_ORDER = {"sys": 0, "dia": 1, "mean": 2}


class PanelBuilder:
    """Collects blood-pressure components while the OBX are walked, then builds the panels."""

    def __init__(self) -> None:
        self.groups: dict[tuple[str, str, str, str], list[Any]] = {}

    def add(self, term: MdcTerm, codings: list[dict[str, Any]], value: tuple[str, Any],
            anchor: str, path: tuple[int, ...], effective: str, time_raw: str, status: str,
            device_ref: str | None) -> None:
        parent = ".".join(str(p) for p in path[:-1])
        key = (anchor, term.panel or "", parent, effective)
        group = self.groups.setdefault(key, [time_raw, status, device_ref, []])
        group[3].append((term, codings, value))

    def build(self, subject: Callable[[str | None], dict[str, Any]]) -> list[dict[str, Any]]:
        return [self._panel(key, g[0], g[1], g[2], g[3], subject) for key, g in self.groups.items()]

    def _panel(self, key: tuple[str, str, str, str], time_raw: str, status: str,
               device_ref: str | None, parts: list[Any],
               subject: Callable[[str | None], dict[str, Any]]) -> dict[str, Any]:
        anchor, panel_code, parent, effective = key
        natural = f"{anchor}|panel:{panel_code}|{parent}|{effective}"
        panel_term = mdc_term(panel_code)
        coding: list[dict[str, Any]] = [{"system": LOINC_SYSTEM, "code": "85354-9",
                                         "display": "Blood pressure panel with all children "
                                                    "optional"}]
        mdc: dict[str, Any] = {"system": MDC_SYSTEM, "code": panel_code}
        if panel_term is not None:
            mdc["display"] = panel_term.refid
        coding.append(mdc)
        obs: dict[str, Any] = {
            "resourceType": "Observation", "id": resource_id("Observation", natural),
            "identifier": [{"system": "urn:vitalgate:observation-key", "value": natural}],
            "status": status, "category": [VITAL_SIGNS], "code": {"coding": coding},
        }
        if panel_term is not None:
            obs["code"]["text"] = panel_term.display
        obs.update(subject(device_ref))
        obs["effectiveDateTime"] = effective
        obs["_effectiveDateTime"] = original_time_ext(time_raw)
        method = parts[0][0].method
        if method in _METHOD:
            code, text = _METHOD[method]
            obs["method"] = {"coding": [{"system": SNOMED_SYSTEM, "code": code}], "text": text}
        parts.sort(key=lambda part: _ORDER.get(part[0].bp or "", 3))
        obs["component"] = [{"code": {"coding": codings}, value[0]: value[1]}
                            for _, codings, value in parts]
        return obs
