"""The PB840 profile against the OpenICE (MD PnP) MISCF/MISCA field map sample: every mapped
numeric field has the unit the field map gives it (unit names translated here by hand)."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from mappers.profiles import load_profile

TSV = Path("/work/shared/samples/pb840/openice-mdpnp_pb840.fields.tsv")
# OpenICE unit names -> the profile's unit codes
UNITS = {"BREATHS_PER_MIN": "bpm", "LITERS": "L", "LITERS_PER_MIN": "L/min", "PERCENT": "%",
         "CMH2O": "cmH2O", "SECONDS": "s", "KILOGRAMS": "kg"}


# Where the field map is less precise than the manual: MISCA 36 is the exhaled MINUTE volume,
# which OpenICE labels LITERS; the manual (and MISCF 72) give L/min.
KNOWN_DIFFERENCES = {("MISCA", 36): "L/min"}


def _field_map() -> dict[tuple[str, int], tuple[str, str]]:
    """(record, field) -> (OpenICE name, unit); the first block of each record only."""
    out: dict[tuple[str, int], tuple[str, str]] = {}
    record = ""
    with TSV.open(newline="") as f:
        for row in csv.DictReader(f, delimiter="\t"):
            if row["Type"] in ("MISCF", "MISCA"):
                record = row["Type"]
                continue
            field = (row["Field1"] or "").strip()
            if record and field.isdigit():
                out.setdefault((record, int(field)), (row["Name"], row["Units"]))
    return out


FIELDS = _field_map()


def test_field_map_sample_reads() -> None:
    assert FIELDS[("MISCF", 70)] == ("PB_TOTAL_RESPIRATORY_RATE", "BREATHS_PER_MIN")
    assert FIELDS[("MISCF", 71)] == ("PB_EXHALED_TIDAL_VOLUME", "LITERS")
    assert FIELDS[("MISCF", 13)] == ("PB_SETTING_RESPIRATORY_RATE", "BREATHS_PER_MIN")


@pytest.mark.parametrize("profile_id", ["medtronic-pb840", "medtronic-pb980"])
def test_profile_units_agree_with_the_field_map(profile_id: str) -> None:
    profile = load_profile(profile_id)
    checked = 0
    for code in profile.codes:
        known = FIELDS.get((code.record, code.field))  # type: ignore[arg-type]
        if code.unit is None or known is None or known[1] not in UNITS:
            continue
        expected = KNOWN_DIFFERENCES.get((code.record, code.field), UNITS[known[1]])  # type: ignore[arg-type]
        assert expected == code.unit, f"{code.record} field {code.field} ({code.key}): {known}"
        checked += 1
    assert checked >= 35
