"""HL7v2 generators: PCD-01 ORU^R01 from a Philips-style monitor (MDC codes, or the PIIC
MDIL-coded variant) and from a Baxter-style infusion pump.

Pure generators of ``(seconds from start, message bytes)``: no sockets, no clocks. Segments
are joined by CR and not MLLP framed (the sender frames). Codes are written here by hand
from the IHE PCD examples and the PIIC samples, never imported from the mappers.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from gateway.simulators.physiology import Physiology, Vitals
from gateway.simulators.waveforms import MONITOR_RATES, MonitorWaves

__all__ = ["BedFeed", "adt_admit", "merge_streams", "monitor_oru", "monitor_stream", "pump_oru",
           "pump_stream", "PumpState"]

Variant = Literal["mdc", "mdil"]
_PCD01 = "IHE_PCD_001^IHE PCD^1.3.6.1.4.1.19376.1.6.1.1.1^ISO"

# (MDC code, ref id, unit code, unit ref id, vital attribute, format, normal range)
_MDC_ROWS = (
    ("147842", "MDC_ECG_HEART_RATE", "264864", "MDC_DIM_BEAT_PER_MIN", "hr", "{:.0f}", "50-120"),
    ("150456", "MDC_PULS_OXIM_SAT_O2", "262688", "MDC_DIM_PERCENT", "spo2", "{:.0f}", "90-100"),
    ("151562", "MDC_RESP_RATE", "264928", "MDC_DIM_RESP_PER_MIN", "rr", "{:.0f}", "8-30"),
    ("150037", "MDC_PRESS_BLD_ART_ABP_SYS", "266016", "MDC_DIM_MMHG", "sbp", "{:.0f}", "90-160"),
    ("150038", "MDC_PRESS_BLD_ART_ABP_DIA", "266016", "MDC_DIM_MMHG", "dbp", "{:.0f}", "50-90"),
    ("150039", "MDC_PRESS_BLD_ART_ABP_MEAN", "266016", "MDC_DIM_MMHG", "map", "{:.0f}", ""),
    ("150344", "MDC_TEMP", "268192", "MDC_DIM_DEGC", "temp", "{:.1f}", ""),
    ("151708", "MDC_AWAY_CO2_ET", "266016", "MDC_DIM_MMHG", "etco2", "{:.0f}", ""),
)
# (MDIL code, label, unit code, unit label, vital attribute, format, alarm limits)
_MDIL_ROWS = (
    ("0002-4182", "HR", "0004-0aa0", "bpm", "hr", "{:.0f}", "50-120"),
    ("0002-4bb8", "SpO2", "0004-0220", "%", "spo2", "{:.0f}", "90-100"),
    ("0002-500a", "RR", "0004-0ae0", "rpm", "rr", "{:.0f}", "8-30"),
    ("0002-4a15", "ABPs", "0004-0f20", "mmHg", "sbp", "{:.0f}", ""),
    ("0002-4a16", "ABPd", "0004-0f20", "mmHg", "dbp", "{:.0f}", ""),
    ("0002-4a17", "ABPm", "0004-0f20", "mmHg", "map", "{:.0f}", ""),
    ("0002-4b48", "Temp", "0004-17a0", "°C", "temp", "{:.1f}", ""),
    ("0002-50b0", "etCO2", "0004-0f20", "mmHg", "etco2", "{:.0f}", ""),
)


@dataclass(frozen=True, slots=True)
class BedFeed:
    """Identity of one simulated bed and its devices."""

    bed: int
    unit: str = "ICU"
    facility: str = "VITALGATE_SIM"

    @property
    def mrn(self) -> str:
        return f"SIM{self.bed:05d}"

    def eui64(self, device: int) -> str:
        return f"00A0C9{device:02X}{self.bed:08X}"


def _ts(at: datetime) -> str:
    return at.strftime("%Y%m%d%H%M%S%z")


def _patient(bed: BedFeed, location: str) -> list[str]:
    return [f"PID|||{bed.mrn}^^^VITALGATE^MR||Sim^Bed{bed.bed}^^^^^L",
            f"PV1||I|{location}"]


# IHE PCD waveform OBX (Waveform Content Module): (wave key, MDC code, ref id, unit)
_WAVE_ROWS = (
    ("ecg_ii", "131330", "MDC_ECG_ELEC_POTL_II", "266419^MDC_DIM_MICRO_VOLT"),
    ("pleth", "150452", "MDC_PULS_OXIM_PLETH", "262656^MDC_DIM_DIMLESS"),
    ("abp", "150036", "MDC_PRESS_BLD_ART_ABP", "266016^MDC_DIM_MMHG"),
)


def _wave_segments(waves: dict[str, list[int]], rates: dict[str, int], start: int, ts: str
                   ) -> list[str]:
    segs = []
    n = start
    for chan, (key, code, ref, unit) in enumerate(_WAVE_ROWS, start=1):
        if key not in waves:
            continue
        data = "^".join(map(str, waves[key]))
        segs.append(f"OBX|{n}|NA|{code}^{ref}^MDC|1.2.{chan}.1|{data}|{unit}^MDC|||||R|||{ts}")
        segs.append(f"OBX|{n + 1}|NM|0^MDC_ATTR_SAMP_RATE^MDC|1.2.{chan}.1.1|{rates[key]}|"
                    "/s^per second^UCUM|||||R")
        n += 2
    return segs


def adt_admit(bed: BedFeed, at: datetime, control_id: str) -> bytes:
    """ADT^A01 admitting the bed's patient (visit ``V<bed>``) to ``unit^bed^1``: what lets the
    gateway associate devices that send no patient (ventilator, LAN monitor) through the bed."""
    ts = _ts(at)
    segs = [f"MSH|^~\\&|SIM_ADT|{bed.facility}|||{ts}||ADT^A01^ADT_A01|{control_id}|P|2.5",
            f"EVN|A01|{ts}",
            f"PID|||{bed.mrn}^^^VITALGATE^MR||Sim^Bed{bed.bed}^^^^^L",
            f"PV1||I|{bed.unit}^{bed.bed}^1" + "|" * 16 + f"V{bed.bed:05d}"]
    return "\r".join(segs).encode("utf-8") + b"\r"


def monitor_oru(bed: BedFeed, vitals: Vitals, at: datetime, control_id: str,
                variant: Variant = "mdc", waves: dict[str, list[int]] | None = None,
                rates: dict[str, int] | None = None) -> bytes:
    """One ORU^R01 with the bed's current numerics (and the last second of waves, if given)."""
    if variant == "mdil":
        return _mdil_oru(bed, vitals, at, control_id)
    ts, eui = _ts(at), bed.eui64(1)
    segs = [f"MSH|^~\\&|PAT_DEVICE_SIM^{eui}^EUI-64|{bed.facility}|||{ts}||ORU^R01^ORU_R01|"
            f"{control_id}|P|2.6|||AL|NE||UNICODE UTF-8|en^English^ISO639||{_PCD01}",
            *_patient(bed, f"{bed.unit}^{bed.bed}^1"),
            f"OBR|1|||69965^MDC_DEV_MON_PHYSIO_MULTI_PARAM_MDS^MDC|||{ts}",
            f"OBX|1||69965^MDC_DEV_MON_PHYSIO_MULTI_PARAM_MDS^MDC|1.0.0.0|||||||X|||||||"
            f"{eui}^^{eui}^EUI-64"]
    for i, (code, ref, ucode, uref, attr, fmt, rng) in enumerate(_MDC_ROWS, start=2):
        value = fmt.format(getattr(vitals, attr))
        segs.append(f"OBX|{i}|NM|{code}^{ref}^MDC|1.1.{i - 1}.1|{value}|{ucode}^{uref}^MDC|"
                    f"{rng}||||R|||{ts}")
    if waves:
        segs += _wave_segments(waves, rates or MONITOR_RATES, len(segs) - 2, ts)
    return "\r".join(segs).encode("utf-8") + b"\r"


def _mdil_oru(bed: BedFeed, vitals: Vitals, at: datetime, control_id: str) -> bytes:
    ts = _ts(at)[:14]  # PIIC sends local time without an offset
    segs = [f"MSH|^~\\&|||||{ts}||ORU^R01|{control_id}|P|2.4||||||8859/1",
            *_patient(bed, f"^^Bed{bed.bed}&{bed.bed}&1"),
            f"OBR|||||||{ts}"]
    for code, label, ucode, ulabel, attr, fmt, limits in _MDIL_ROWS:
        value = fmt.format(getattr(vitals, attr))
        segs.append(f"OBX||NM|{code}^{label}^MDIL|0|{value}|{ucode}^{ulabel}^MDIL|{limits}||||F")
    return "\r".join(segs).encode("latin-1") + b"\r"


@dataclass(slots=True)
class PumpState:
    drug: str = "Norepinephrine"
    concentration_mg_ml: float = 0.064
    weight_kg: float = 80.0
    dose_ug_kg_min: float = 0.05
    vtbi_ml: float = 250.0
    infused_ml: float = 0.0

    @property
    def rate_ml_h(self) -> float:
        # dose (ug/kg/min) * kg * 60 min/h / (ug/mL)
        return self.dose_ug_kg_min * self.weight_kg * 60 / (self.concentration_mg_ml * 1000)

    @property
    def remaining_ml(self) -> float:
        return max(0.0, self.vtbi_ml - self.infused_ml)

    def advance(self, dt: float) -> None:
        self.infused_ml = min(self.vtbi_ml, self.infused_ml + self.rate_ml_h * dt / 3600)


def pump_oru(bed: BedFeed, pump: PumpState, at: datetime, control_id: str,
             device: int = 2) -> bytes:
    """PCD-01 ORU^R01 with the pump's status, rate, dose and volumes (IPEC codes)."""
    ts, eui = _ts(at), bed.eui64(device)
    infusing = pump.remaining_ml > 0
    status = "pump-status-infusing" if infusing else "pump-status-not-infusing"
    nm = (("157784", "MDC_FLOW_FLUID_PUMP", pump.rate_ml_h if infusing else 0.0,
           "265266^MDC_DIM_MILLI_L_PER_HR", "{:.1f}"),
          ("157924", "MDC_RATE_DOSE", pump.dose_ug_kg_min if infusing else 0.0,
           "265619^MDC_DIM_MICRO_G_PER_KG_PER_MIN", "{:.3f}"),
          ("157884", "MDC_VOL_FLUID_TBI", pump.vtbi_ml, "263762^MDC_DIM_MILLI_L", "{:.1f}"),
          ("157872", "MDC_VOL_FLUID_TBI_REMAIN", pump.remaining_ml, "263762^MDC_DIM_MILLI_L",
           "{:.1f}"),
          ("157993", "MDC_VOL_FLUID_DELIV_TOTAL", pump.infused_ml, "263762^MDC_DIM_MILLI_L",
           "{:.1f}"),
          ("157760", "MDC_CONC_DRUG", pump.concentration_mg_ml, "264306^MDC_DIM_MILLI_G_PER_ML",
           "{:.3f}"))
    segs = [f"MSH|^~\\&|PAT_DEVICE_BAXTER^{eui}^EUI-64|BAXTER|||{ts}||ORU^R01^ORU_R01|"
            f"{control_id}|P|2.6|||AL|NE||UNICODE UTF-8|en^English^ISO639||{_PCD01}",
            *_patient(bed, f"{bed.unit}^{bed.bed}^1"),
            f"OBR|1|||69985^MDC_DEV_PUMP_INFUS_MDS^MDC|||{ts}",
            f"OBX|1||70049^MDC_DEV_PUMP_INFUS_LVP_MDS^MDC|1.0.0.0|||||||X|||||||"
            f"{eui}^^{eui}^EUI-64",
            f"OBX|2|CWE|184519^MDC_PUMP_INFUSING_STATUS^MDC|1.1.1.1|^{status}||||||R",
            f"OBX|3|ST|184514^MDC_DRUG_NAME_LABEL^MDC|1.1.2.1|{pump.drug}||||||R"]
    for i, (code, ref, value, unit, fmt) in enumerate(nm, start=4):
        segs.append(f"OBX|{i}|NM|{code}^{ref}^MDC|1.1.2.{i - 2}|{fmt.format(value)}|"
                    f"{unit}^MDC|||||R|||{ts}")
    return "\r".join(segs).encode("utf-8") + b"\r"


def monitor_stream(bed: BedFeed, physiology: Physiology, start: datetime, duration_s: float,
                   *, interval_s: float = 1.0, variant: Variant = "mdc", waveforms: bool = False
                   ) -> Iterator[tuple[float, bytes]]:
    """One message per ``interval_s``; nothing while a disconnect scenario holds.

    With ``waveforms`` (MDC variant only) each message also carries the waves of the
    preceding ``interval_s`` as NA OBX (ECG 250 Hz, pleth and ABP 125 Hz).
    """
    t, n = 0.0, 0
    gen = MonitorWaves() if waveforms and variant == "mdc" else None
    while t < duration_s:
        vitals = physiology.advance(interval_s if n else 0.0)
        waves = gen.block(vitals, interval_s) if gen is not None else None
        if physiology.connected():
            cid = f"M{bed.bed:04d}-{n:08d}"
            yield t, monitor_oru(bed, vitals, start + timedelta(seconds=t), cid, variant, waves)
        n += 1
        t = n * interval_s


def pump_stream(bed: BedFeed, start: datetime, duration_s: float, *, interval_s: float = 10.0,
                pump: PumpState | None = None, physiology: Physiology | None = None,
                device: int = 2) -> Iterator[tuple[float, bytes]]:
    """Pump status every ``interval_s``; vasopressor dose follows the bed's severity."""
    state = pump or PumpState()
    base = state.dose_ug_kg_min
    t, n = 0.0, 0
    while t < duration_s:
        if physiology is not None and physiology.scenario in ("sepsis", "hypotension"):
            state.dose_ug_kg_min = base + 0.25 * physiology.severity()
        cid = f"P{bed.bed:04d}{device}-{n:08d}"
        yield t, pump_oru(bed, state, start + timedelta(seconds=t), cid, device)
        state.advance(interval_s)
        n += 1
        t = n * interval_s


def merge_streams(streams: Iterable[Iterator[tuple[float, bytes]]]
                  ) -> Iterator[tuple[float, bytes]]:
    """Interleave several streams by time."""
    return heapq.merge(*streams, key=lambda item: item[0])
