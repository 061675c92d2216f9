"""Blood-pressure panels: sys/dia/mean OBX of one family (same panel MDC code), parent path
and time become one Observation 85354-9 with components, the method coded by SNOMED CT."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..terminology import LOINC_SYSTEM, MDC_SYSTEM, SNOMED_SYSTEM, MdcTerm, mdc_term
from .fields import original_time_ext, timed_resource_id

VITAL_SIGNS = {"coding": [{
    "system": "http://terminology.hl7.org/CodeSystem/observation-category",
    "code": "vital-signs", "display": "Vital Signs"}]}
PANEL_LOINC = {"system": LOINC_SYSTEM, "code": "85354-9",
               "display": "Blood pressure panel with all children optional"}
_METHOD = {"noninvasive": ("17146006", "non-invasive"), "invasive": ("77938009", "invasive")}
_ORDER = {"sys": 0, "dia": 1, "mean": 2}


@dataclass
class _Group:
    natural_key: str
    panel_code: str
    effective: str
    time_raw: str
    status: str
    refs: dict[str, Any]  # subject / encounter / device as they were when the OBX was read
    parts: list[tuple[MdcTerm, list[dict[str, Any]], tuple[str, Any]]] = field(default_factory=list)


class PanelBuilder:
    """Collects blood-pressure components while the OBX are walked, then builds the panels."""

    def __init__(self) -> None:
        self.groups: dict[tuple[str, str], _Group] = {}

    def add(self, term: MdcTerm, codings: list[dict[str, Any]], value: tuple[str, Any],
            anchor: str, path: tuple[int, ...], effective: str, time_raw: str, status: str,
            refs: dict[str, Any]) -> None:
        parent = ".".join(str(p) for p in path[:-1])
        natural = f"{effective}|{anchor}|panel:{term.panel}|{parent}"
        subject = str(refs.get("subject", {}).get("reference", ""))
        group = self.groups.get((natural, subject))
        if group is None:
            group = _Group(natural, term.panel or "", effective, time_raw, status, refs)
            self.groups[(natural, subject)] = group
        group.parts.append((term, codings, value))

    def build(self) -> list[dict[str, Any]]:
        return [_panel(group) for group in self.groups.values()]


def _panel(group: _Group) -> dict[str, Any]:
    panel_term = mdc_term(group.panel_code)
    mdc: dict[str, Any] = {"system": MDC_SYSTEM, "code": group.panel_code}
    if panel_term is not None:
        mdc["display"] = panel_term.refid
    obs: dict[str, Any] = {
        "resourceType": "Observation", "id": timed_resource_id("Observation", group.natural_key, group.effective),
        "identifier": [{"system": "urn:vitalgate:observation-key", "value": group.natural_key}],
        "status": group.status, "category": [VITAL_SIGNS],
        "code": {"coding": [dict(PANEL_LOINC), mdc]},
    }
    if panel_term is not None:
        obs["code"]["text"] = panel_term.display
    obs.update(group.refs)
    obs["effectiveDateTime"] = group.effective
    obs["_effectiveDateTime"] = original_time_ext(group.time_raw)
    method = group.parts[0][0].method
    if method in _METHOD:
        code, text = _METHOD[method]
        obs["method"] = {"coding": [{"system": SNOMED_SYSTEM, "code": code}], "text": text}
    parts = sorted(group.parts, key=lambda part: _ORDER.get(part[0].bp or "", 3))
    obs["component"] = [{"code": {"coding": codings}, value[0]: value[1]}
                        for _, codings, value in parts]
    return obs
