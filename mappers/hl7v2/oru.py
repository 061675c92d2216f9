"""ORU^R01 / R40 / R42 (incl. IHE PCD-01, -04, -10) to Patient, Encounter, Location, Device
and Observation resources.

Rules (see also ``values`` for OBX-5):
- OBX-3 in MDC (or mapped to MDC through ``ctx.code_aliases``, e.g. Philips MDIL) gets the
  MDC coding plus, where ``terminology`` has one, the vital-signs LOINC first and category
  ``vital-signs`` (only when the unit resolves to UCUM). The vendor label is ``code.text``.
- OBX-4 ``MDS.VMD.CHAN.METRIC``: an OBX with an empty OBX-5 above metric level (1-3 levels
  after dropping trailing zeros) is a container: it gives its OBX-18 device and OBX-14 time
  to the OBX below it and produces no Observation.
- Effective time: OBX-14, else the nearest container's, else OBR-7, else MSH-7; read in
  ``ctx.site_tz`` when it has no offset; the string as sent is kept in the primitive
  extension ``_effectiveDateTime`` (``fields.ORIGINAL_TIME_URL``).
- Status: OBX-11 per the HL7 v2-to-FHIR table (X -> cancelled), overridable per sending
  application (``ctx.status_maps``); empty OBX-5 -> ``dataAbsentReason`` (``error`` for X).
- Blood pressure sys/dia/mean of one family (NBP, ART, ABP, generic) under one parent and
  time -> ONE panel 85354-9 with components and method (SNOMED non-invasive / invasive).
- NA (numeric array) OBX -> waveform Observation (``valueSampledData``, category ``waveform``,
  never ``vital-signs``); a child OBX with the sampling rate sets its period (``waveforms``).
- Settings (OBX-17 SETTING/CONFIGURATION) -> category ``device-setting``; alerts (coding
  system ``*-ALERT``, or any ORU^R40 row) -> category ``device-alert``, both in
  ``urn:vitalgate:observation-category``: recorded, never vital signs.
- OBX-7 -> referenceRange, except for alarm-limit sources (``ctx.alarm_limit_sources``, MDIL).
- ORU^R42 (PCD-10) pump delivery events also yield a MedicationAdministration (see ``infusion``).
- Observation ids and ``urn:vitalgate:observation-key`` identifiers: effective time first,
  then device-or-bed-or-patient + code + OBX-4 (``fields.timed_resource_id``), so that both
  sort by time; other ids are uuid5 over their natural keys.
- Patient, Encounter and Location built from the ORU's PID/PV1 are listed in
  ``MappingResult.reference_only``: ADT owns them, the ORU only makes sure they exist.
"""

from __future__ import annotations

from typing import Any

from .context import MappingContext, MappingResult
from .entities import PatientRef, encounter_key, location_key, map_device, map_encounter, map_locations, map_patient
from .errors import DATA_TYPE_ERROR, REQUIRED_FIELD_MISSING, TABLE_VALUE_NOT_FOUND, HL7Error
from .fields import NULL, cwe_codings, fhir_datetime, original_time_ext, resource_id, timed_resource_id
from .header import read_header
from .infusion import medication_administrations
from .oru_series import Series, series_of
from .oru_units import reference_range
from .panels import PanelBuilder
from .tokenizer import Message, Segment
from .values import data_absent, decimal, obx_value, quantity
from .waveforms import WAVEFORM_CATEGORY, apply_period, sampling_period_ms

CATEGORY_SYSTEM = "http://terminology.hl7.org/CodeSystem/observation-category"
LOCAL_CATEGORY = "urn:vitalgate:observation-category"
KEY_SYSTEM = "urn:vitalgate:observation-key"


class _OruMapper:
    """Walks the segments once, keeping the current patient, OBR group and OBX hierarchy."""

    def __init__(self, msg: Message, ctx: MappingContext) -> None:
        self.msg, self.ctx = msg, ctx
        self.header = read_header(msg)
        self.out: dict[tuple[str, str], dict[str, Any]] = {}
        self.patient: PatientRef | None = None
        self.patient_keys: list[str] = []
        self.encounter_ref: str | None = None
        self.bed: dict[str, Any] | None = None
        self.obr_time = ""
        self.nodes: dict[tuple[int, ...], tuple[str | None, str]] = {}
        self.panels = PanelBuilder()
        self.counts: dict[str, int] = {}
        self.device_keys: dict[str, str | None] = {}  # raw OBX-18 -> device key
        self.device_refs: dict[str, str] = {}  # device key -> "Device/<id>"
        self.waves: dict[tuple[int, ...], dict[str, Any]] = {}  # OBX-4 path -> waveform Observation
        self.sender_app = self.header.sending_app.split(msg.enc.component)[0]  # MSH-3.1

    def add(self, resource: dict[str, Any]) -> None:
        self.out[(resource["resourceType"], resource["id"])] = resource

    def run(self) -> MappingResult:
        for seg in self.msg.segments:
            seq = self.counts[seg.name] = self.counts.get(seg.name, 0) + 1
            if seg.name == "PID":
                self.on_pid(seg)
            elif seg.name == "PV1":
                self.on_pv1(seg)
            elif seg.name == "OBR":
                self.obr_time, self.nodes = seg.get(7, 1), {}
            elif seg.name == "OBX":
                self.on_obx(seg, seq)
        for panel in self.panels.build():
            self.add(panel)
        if self.header.trigger_event == "R42":
            for admin in medication_administrations(self.msg, list(self.out.values())):
                self.add(admin)
        owned_by_adt = frozenset(f"{kind}/{rid}" for kind, rid in self.out
                                 if kind in ("Patient", "Encounter", "Location"))
        return MappingResult(list(self.out.values()), self.patient_keys, owned_by_adt)

    def on_pid(self, pid: Segment) -> None:
        self.patient, self.encounter_ref, self.bed = map_patient(pid, self.ctx), None, None
        if self.patient is not None:
            self.add(self.patient.resource)
            self.patient_keys.extend(self.patient.keys)

    def on_pv1(self, pv1: Segment) -> None:
        chain = map_locations(pv1, 3)
        for loc in chain:
            self.add(loc)
        self.bed = chain[-1] if chain else None
        key = encounter_key(pv1, self.patient, self.ctx)
        if key is None:
            return
        enc = map_encounter(pv1, self.patient, key, "in-progress", self.ctx)
        if self.bed is not None:
            enc["location"] = [{"location": {"reference": f"Location/{self.bed['id']}"},
                                "status": "active"}]
        self.add(enc)
        self.encounter_ref = f"Encounter/{enc['id']}"

    def subject_fields(self, device_ref: str | None) -> dict[str, Any]:
        """subject / encounter / device references shared by every Observation."""
        fields: dict[str, Any] = {}
        if self.patient is not None:
            fields["subject"] = {"reference": self.patient.reference}
        elif device_ref:
            fields["subject"] = {"reference": device_ref}
        elif self.bed is not None:
            fields["subject"] = {"reference": f"Location/{self.bed['id']}"}
        if self.encounter_ref:
            fields["encounter"] = {"reference": self.encounter_ref}
        if device_ref:
            fields["device"] = {"reference": device_ref}
        return fields

    def on_obx(self, obx: Segment, seq: int) -> None:
        sub_id = obx.get(4)
        path = _path(sub_id)
        wave = self.waves.get(path[:-1]) if len(path) > 1 else None
        if wave is not None and (period := sampling_period_ms(obx)) is not None:
            apply_period(wave, period)  # a sampling attribute of the waveform above, not a metric
            return
        device_key, time_raw = self.inherited(obx, path, seq)
        raw_value = obx.get(5)
        if raw_value in ("", NULL) and 0 < len(path) < 4:
            self.nodes[path] = (device_key, time_raw)
            return
        self.nodes[path] = (device_key, time_raw)
        if len(path) >= 5 and path[:-1] not in self.nodes:
            # PCD-04 facets (MDS.VMD.CHAN.METRIC.facet) of one alarm: the first facet's device
            # stands for the alarm, so its siblings get it too (but not its time).
            self.nodes[path[:-1]] = (device_key, "")
        self.map_metric(obx, seq, path, sub_id, raw_value, device_key, time_raw)

    def inherited(self, obx: Segment, path: tuple[int, ...], seq: int) -> tuple[str | None, str]:
        nodes = self.nodes
        parents = [node for k in range(len(path) - 1, 0, -1) if (node := nodes.get(path[:k])) is not None]
        device_key = self.device(obx, parents[0][0] if parents else None)
        time_raw = obx.get(14, 1) or next((t for _, t in parents if t), "")
        time_raw = time_raw or self.obr_time or self.header.timestamp
        if not time_raw:
            raise HL7Error(REQUIRED_FIELD_MISSING, "no observation time (OBX-14, OBR-7, MSH-7)",
                           f"OBX^{seq}^14")
        return device_key, time_raw

    def device(self, obx: Segment, parent_key: str | None) -> str | None:
        raw = obx[18]
        if not raw:
            return parent_key
        if raw in self.device_keys:  # PCD senders repeat OBX-18 on every row
            return self.device_keys[raw] or parent_key
        found = map_device(obx, 18)
        self.device_keys[raw] = found[0] if found else None
        if found is None:
            return parent_key
        key, device = found
        concept = cwe_codings(obx.components(3), obx.enc)
        if concept and obx.get(5) in ("", NULL):
            device["type"] = {"coding": concept}
        if parent_key and parent_key != key:
            device["parent"] = {"reference": f"Device/{resource_id('Device', parent_key)}"}
        if self.bed is not None:
            device["location"] = {"reference": f"Location/{self.bed['id']}"}
        if ("Device", device["id"]) not in self.out:
            self.add(device)
        return key

    def map_metric(self, obx: Segment, seq: int, path: tuple[int, ...], sub_id: str, raw_value: str,
                   device_key: str | None, time_raw: str) -> None:
        """``sub_id`` and ``raw_value``: OBX-4 and OBX-5 as ``on_obx`` read them."""
        effective = fhir_datetime(time_raw, self.ctx.site_tz)
        if effective is None:
            raise HL7Error(DATA_TYPE_ERROR, f"not a date/time: {time_raw[:40]!r}", f"OBX^{seq}^14")
        series = series_of(obx, self.ctx, self.header.trigger_event, self.sender_app)
        term, codings, category, unit = series.term, series.copied_codings(), series.category, series.unit
        anchor = self.anchor(device_key)
        device_ref = self.device_ref(device_key)
        if series.status is None:
            raise HL7Error(TABLE_VALUE_NOT_FOUND, f"unknown result status {series.status_code[:5]!r}",
                           f"OBX^{seq}^11")
        obs: dict[str, Any] = {"resourceType": "Observation", "status": series.status}
        value = _value(obx, seq, raw_value, series, self.ctx)
        if term is not None and term.bp and term.panel and category is None:
            self.panels.add(term, codings, value, anchor, path, effective, time_raw, obs["status"],
                            self.subject_fields(device_ref))
            return
        key = f"{effective}|{anchor}|{series.code_key}|{sub_id}"
        obs["id"] = timed_resource_id("Observation", key, effective)
        obs["identifier"] = [{"system": KEY_SYSTEM, "value": key}]
        is_vital = (term is not None and term.vital and category is None
                    and (value[0] != "valueQuantity" or "code" in value[1]))
        if value[0] == "valueSampledData":
            obs["category"] = [_category(LOCAL_CATEGORY, WAVEFORM_CATEGORY, "Waveform")]
            self.waves[path] = obs
        elif is_vital:
            obs["category"] = [_category(CATEGORY_SYSTEM, "vital-signs", "Vital Signs")]
        elif category:
            obs["category"] = [_category(LOCAL_CATEGORY, category, None)]
        obs["code"] = {"coding": codings}
        if series.label:
            obs["code"]["text"] = series.label
        obs.update(self.subject_fields(device_ref))
        obs["effectiveDateTime"] = effective
        obs["_effectiveDateTime"] = original_time_ext(time_raw)
        obs[value[0]] = value[1]
        # an empty OBX-7 has no range: reference_range would read and unescape it to say so
        if value[0] == "valueQuantity" and not series.alarm_limits and obx[7]:
            ranges = reference_range(obx, unit)
            if ranges:
                obs["referenceRange"] = ranges
        self.add(obs)

    def device_ref(self, device_key: str | None) -> str | None:
        if not device_key:
            return None
        ref = self.device_refs.get(device_key)
        if ref is None:
            ref = self.device_refs[device_key] = f"Device/{resource_id('Device', device_key)}"
        return ref

    def anchor(self, device_key: str | None) -> str:
        if device_key:
            return f"device:{device_key}"
        if self.bed is not None:
            return f"bed:{location_key(self.bed)}"
        if self.patient is not None:
            return f"patient:{self.patient.key}"
        return f"sender:{self.header.sending_app}|{self.header.sending_facility}"


def _category(system: str, code: str, display: str | None) -> dict[str, Any]:
    coding = {"system": system, "code": code}
    if display:
        coding["display"] = display
    return {"coding": [coding]}


def _value(obx: Segment, seq: int, raw: str, series: Series, ctx: MappingContext) -> tuple[str, Any]:
    if raw in ("", NULL):
        absent = "error" if series.status_code == "X" else "unknown"
        return "dataAbsentReason", data_absent(absent)
    if series.value_type == "NM":  # obx_value's first case, without reading OBX-2 and 5 again
        return "valueQuantity", quantity(decimal(raw, f"OBX^{seq}^5"), *series.unit)
    return obx_value(obx, seq, series.unit, ctx.site_tz)


_PATHS: dict[str, tuple[int, ...]] = {}  # a monitor repeats its few OBX-4 paths


def _path(raw: str) -> tuple[int, ...]:
    """OBX-4 ``1.2.1.0`` -> (1, 2, 1); non-numeric or ``0`` -> () (no hierarchy)."""
    found = _PATHS.get(raw)
    if found is None:
        try:
            parts = [int(p) for p in raw.split(".")] if raw else []
        except ValueError:
            parts = []
        while parts and parts[-1] == 0:
            parts.pop()
        found = tuple(parts)
        if len(_PATHS) < 4096:  # bounded: a sender's junk must not grow it
            _PATHS[raw] = found
    return found


def map_oru(msg: Message, ctx: MappingContext) -> MappingResult:
    """Map one ORU message; raises HL7Error (with an ERR location) for unmappable content."""
    return _OruMapper(msg, ctx).run()
