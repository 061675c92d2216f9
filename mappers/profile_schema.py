"""Pydantic models for one vendor profile (``vendor_profiles/<id>.toml``).

A profile is declarative data: transport and framing, the record/field or code layout,
the code map (vendor code -> MDC -> LOINC), the unit map to UCUM with conversion factors,
timing (reporting interval, stale timeout) and value validity rules. Cross-field rules
(every unit referenced exists, layout keys match the transport) are checked here so a
broken profile is refused when it is loaded, never half-used.
"""

from __future__ import annotations

import functools
import re
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

MDC_SYSTEM = "urn:iso:std:iso:11073:10101"
LOINC_SYSTEM = "http://loinc.org"

Kind = Literal["measured", "setting", "alarm-limit", "alarm-status", "text", "identity"]
ValueType = Literal["quantity", "string", "alarm"]
DeviceType = Literal["monitor", "ventilator", "infusion-pump"]

_Digits = Annotated[str, Field(pattern=r"^\d+$")]
_Loinc = Annotated[str, Field(pattern=r"^\d{1,7}-\d$")]
_MdcRef = Annotated[str, Field(pattern=r"^MDC_[A-Z0-9_]+$")]
_Key = Annotated[str, Field(pattern=r"^[A-Za-z][A-Za-z0-9_]*$", max_length=32)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MllpTransport(_Strict):
    """HL7v2 over MLLP (PIIC export, pump gateways)."""

    kind: Literal["mllp"]
    default_port: int = Field(2575, ge=1, le=65535)
    max_frame_bytes: int = Field(1_048_576, ge=1024)


class Pb840Transport(_Strict):
    """RS-232 poll/response carried over TCP by a serial device server."""

    kind: Literal["pb840-serial-tcp"]
    default_port: int = Field(4001, ge=1, le=65535)
    poll_command: Literal["SNDF", "SNDA"] = "SNDF"
    poll_interval_s: float = Field(2.0, gt=0, le=60)
    max_response_bytes: int = Field(4096, ge=256, le=65536)
    baud: int = Field(9600, ge=1200, le=115200)


class IntellivueUdpTransport(_Strict):
    """Philips IntelliVue LAN Data Export (UDP)."""

    kind: Literal["intellivue-udp"]
    connect_indication_port: int = Field(24005, ge=1, le=65535)
    association_port: int = Field(24105, ge=1, le=65535)
    poll_interval_s: float = Field(1.0, gt=0, le=60)


Transport = Annotated[
    MllpTransport | Pb840Transport | IntellivueUdpTransport, Field(discriminator="kind")
]


class Timing(_Strict):
    reporting_interval_s: float = Field(gt=0)
    stale_timeout_s: float = Field(gt=0)
    clock_drift_limit_s: float | None = Field(None, gt=0)

    @model_validator(mode="after")
    def _stale_after_interval(self) -> Timing:
        if self.stale_timeout_s <= self.reporting_interval_s:
            raise ValueError("stale_timeout_s must be longer than reporting_interval_s")
        return self


class Coding(_Strict):
    """How codes and units appear on the wire (OBX-3 / OBX-6 component 3)."""

    code_system: str = Field(min_length=1)
    unit_system: str = Field(min_length=1)


class RecordLayout(_Strict):
    """One fixed-field record type (PB840 ``MISCF`` / ``MISCA``)."""

    name: Literal["MISCF", "MISCA"]
    command: Literal["SNDF", "SNDA"]
    field_counts: list[int] = Field(min_length=1)
    first_field: int = Field(5, ge=1)
    vent_time_field: int
    vent_id_field: int
    vent_date_field: int
    mode_fields: list[int] = Field(min_length=1, max_length=3)
    alarm_values: list[str] = Field(min_length=1)
    normal_alarm_values: list[str] = Field(min_length=1)


class UnitEntry(_Strict):
    code: str = Field(min_length=1)
    label: str
    ucum: str = Field(min_length=1)
    factor: float = Field(1.0, gt=0)
    mdc: _Digits | None = None


class CodeEntry(_Strict):
    key: _Key
    label: str
    display: str
    code: str | None = None
    record: Literal["MISCF", "MISCA"] | None = None
    field: int | None = Field(None, ge=1)
    kind: Kind = "measured"
    value_type: ValueType = "quantity"
    unit: str | None = None
    mdc: _Digits | None = None
    mdc_refid: _MdcRef | None = None
    loinc: _Loinc | None = None
    loinc_display: str | None = None
    vital_sign: bool = False
    valid_min: float | None = None
    valid_max: float | None = None
    allowed: list[str] | None = None
    note: str | None = None

    @model_validator(mode="after")
    def _consistent(self) -> CodeEntry:
        if self.vital_sign and not self.loinc:
            raise ValueError("vital_sign = true needs a loinc code")
        if (self.mdc is None) != (self.mdc_refid is None):
            raise ValueError("mdc and mdc_refid go together")
        if self.value_type == "quantity" and self.unit is None:
            raise ValueError("a quantity needs a unit")
        lo, hi = self.valid_min, self.valid_max
        if lo is not None and hi is not None and lo > hi:
            raise ValueError("valid_min is above valid_max")
        return self

    @property
    def layout_key(self) -> str:
        """Identity on the wire: the vendor code, or ``RECORD:field``."""
        return self.code if self.code is not None else f"{self.record}:{self.field}"


class WaveEntry(_Strict):
    """A waveform channel by vendor code, mapped to one of ``mappers.waveform.WAVES``."""

    code: str = Field(min_length=1)
    wave: Literal["ecg_i", "ecg_ii", "ecg_iii", "ecg_v", "pleth", "abp", "paw", "flow"]
    label: str


class ModeEntry(_Strict):
    """A named ventilation mode for a (mode, mandatory type, spontaneous type) triple."""

    parts: list[str] = Field(min_length=1, max_length=3)
    name: str


class Profile(_Strict):
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    vendor: str
    manufacturer: str
    models: list[str] = Field(min_length=1)
    model_names: dict[str, str] = Field(default_factory=dict)
    device_type: DeviceType
    description: str = ""
    transport: Transport
    timing: Timing
    coding: Coding
    records: list[RecordLayout] = Field(default_factory=list)
    units: list[UnitEntry] = Field(default_factory=list)
    codes: list[CodeEntry] = Field(min_length=1)
    modes: list[ModeEntry] = Field(default_factory=list)
    waves: list[WaveEntry] = Field(default_factory=list)

    @model_validator(mode="after")
    def _cross_checks(self) -> Profile:
        _check_unique([u.code for u in self.units], "units", "code")
        _check_unique([c.key for c in self.codes], "codes", "key")
        _check_unique([c.layout_key for c in self.codes], "codes", "code/field")
        unit_codes = {u.code for u in self.units}
        for i, c in enumerate(self.codes):
            if c.unit is not None and c.unit not in unit_codes:
                raise ValueError(f"codes[{i}] ({c.key}): unit {c.unit!r} is not in [[units]]")
        if self.transport.kind == "pb840-serial-tcp":
            self._check_record_layout()
        else:
            for i, c in enumerate(self.codes):
                if c.code is None:
                    raise ValueError(f"codes[{i}] ({c.key}): needs 'code' for {self.transport.kind}")
        return self

    def _check_record_layout(self) -> None:
        if not self.records:
            raise ValueError("a pb840-serial-tcp profile needs [[records]]")
        names = {r.name for r in self.records}
        for i, c in enumerate(self.codes):
            if c.record is None or c.field is None:
                raise ValueError(f"codes[{i}] ({c.key}): needs 'record' and 'field'")
            if c.record not in names:
                raise ValueError(f"codes[{i}] ({c.key}): record {c.record!r} is not in [[records]]")

    # -- look-ups -------------------------------------------------------------

    @functools.cached_property
    def _unit_index(self) -> dict[str, UnitEntry]:
        return {u.code: u for u in self.units}

    @functools.cached_property
    def _record_index(self) -> dict[str, list[CodeEntry]]:
        index: dict[str, list[CodeEntry]] = {}
        for c in self.codes:
            if c.record is not None:
                index.setdefault(c.record, []).append(c)
        return index

    @functools.cached_property
    def _code_index(self) -> dict[str, CodeEntry]:
        return {v: c for c in self.codes if c.code for v in _case_variants(c.code)}

    def code_entry(self, code: str) -> CodeEntry | None:
        """The entry for a vendor code (hex codes in either case), or None."""
        return self._code_index.get(code) or self._code_index.get(code.lower())

    def wave_entry(self, code: str) -> WaveEntry | None:
        low = code.lower()
        return next((w for w in self.waves if w.code.lower() == low), None)

    def unit(self, code: str) -> UnitEntry:
        return self._unit_index[code]

    def record(self, name: str) -> RecordLayout:
        for r in self.records:
            if r.name == name:
                return r
        raise KeyError(name)

    def codes_for_record(self, name: str) -> list[CodeEntry]:
        return list(self._record_index.get(name, ()))

    def code_aliases(self) -> dict[tuple[str, str], str]:
        """``(coding system, vendor code) -> MDC numeric code`` for the HL7v2 mapper."""
        system = self.coding.code_system
        out: dict[tuple[str, str], str] = {}
        for c in self.codes:
            if c.code and c.mdc:
                for variant in _case_variants(c.code):
                    out[(system, variant)] = c.mdc
        return out

    def unit_aliases(self) -> dict[tuple[str, str], str]:
        """``(unit system, vendor unit code) -> UCUM`` for the HL7v2 mapper.

        Only units whose factor is 1 are listed: a scaled unit cannot be an alias.
        """
        system = self.coding.unit_system
        return {(system, variant): u.ucum for u in self.units if u.factor == 1.0
                for variant in _case_variants(u.code)}

    def model_name(self, model: str) -> str:
        return self.model_names.get(model, f"{self.vendor} {model}")


def _case_variants(code: str) -> tuple[str, ...]:
    """Hex partition-term codes (``0002-4bb8``) are matched in either case."""
    if _HEX_CODE.match(code):
        return tuple(dict.fromkeys((code, code.lower(), code.upper())))
    return (code,)


_HEX_CODE = re.compile(r"^[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}$")


def _check_unique(values: list[str], table: str, what: str) -> None:
    seen: set[str] = set()
    for v in values:
        if v in seen:
            raise ValueError(f"[[{table}]]: duplicate {what} {v!r}")
        seen.add(v)
