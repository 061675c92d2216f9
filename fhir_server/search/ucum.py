"""A small table-driven UCUM canonicaliser for the units an ICU feed uses.

Quantity search compares values in one canonical unit per dimension, so ``16 kPa`` finds
``120 mm[Hg]`` (https://hl7.org/fhir/R4B/search.html#quantity). Each unit maps to
``(canonical unit, factor, offset)`` with ``canonical = value * factor + offset``; the offset
makes temperature affine (``[degF]`` -> ``Cel``). Annotations such as ``{beats}`` carry no
meaning in UCUM and are dropped. A unit not in the table is its own canonical unit.
Not a full UCUM parser: this is deliberately the list below and nothing more.
"""

from __future__ import annotations

import re
from functools import lru_cache

__all__ = ["UCUM_SYSTEM", "canonical", "canonical_unit"]

UCUM_SYSTEM = "http://unitsofmeasure.org"

# 1 mm[Hg] = 13.5951 g/cm3 * 9.80665 m/s2 * 1 mm (UCUM's definition), in Pa.
_MMHG_PA = 133.322387415
_F = 5.0 / 9.0

_TABLE: dict[str, tuple[str, float, float]] = {
    # pressure -> Pa
    "Pa": ("Pa", 1.0, 0.0),
    "hPa": ("Pa", 100.0, 0.0),
    "kPa": ("Pa", 1000.0, 0.0),
    "mbar": ("Pa", 100.0, 0.0),
    "bar": ("Pa", 100_000.0, 0.0),
    "mm[Hg]": ("Pa", _MMHG_PA, 0.0),
    "cm[H2O]": ("Pa", 98.0665, 0.0),
    # temperature -> Cel (affine)
    "Cel": ("Cel", 1.0, 0.0),
    "[degF]": ("Cel", _F, -32.0 * _F),
    "K": ("Cel", 1.0, -273.15),
    # volume -> L
    "L": ("L", 1.0, 0.0),
    "dL": ("L", 0.1, 0.0),
    "mL": ("L", 1e-3, 0.0),
    "uL": ("L", 1e-6, 0.0),
    # mass -> g
    "kg": ("g", 1000.0, 0.0),
    "g": ("g", 1.0, 0.0),
    "mg": ("g", 1e-3, 0.0),
    "ug": ("g", 1e-6, 0.0),
    "ng": ("g", 1e-9, 0.0),
    "[lb_av]": ("g", 453.59237, 0.0),
    # length -> m
    "m": ("m", 1.0, 0.0),
    "cm": ("m", 0.01, 0.0),
    "mm": ("m", 1e-3, 0.0),
    # time -> s
    "s": ("s", 1.0, 0.0),
    "ms": ("s", 1e-3, 0.0),
    "min": ("s", 60.0, 0.0),
    "h": ("s", 3600.0, 0.0),
    "d": ("s", 86400.0, 0.0),
    # frequency -> /min
    "/min": ("/min", 1.0, 0.0),
    "/s": ("/min", 60.0, 0.0),
    "/h": ("/min", 1.0 / 60.0, 0.0),
    "Hz": ("/min", 60.0, 0.0),
    # ratios
    "%": ("%", 1.0, 0.0),
    # volume flow -> mL/h
    "mL/h": ("mL/h", 1.0, 0.0),
    "mL/min": ("mL/h", 60.0, 0.0),
    "mL/s": ("mL/h", 3600.0, 0.0),
    "L/h": ("mL/h", 1000.0, 0.0),
    "L/min": ("mL/h", 60_000.0, 0.0),
    "L/s": ("mL/h", 3_600_000.0, 0.0),
    # weight-based dose rate -> ug/kg/min
    "ug/kg/min": ("ug/kg/min", 1.0, 0.0),
    "ug/kg/h": ("ug/kg/min", 1.0 / 60.0, 0.0),
    "mg/kg/min": ("ug/kg/min", 1000.0, 0.0),
    "mg/kg/h": ("ug/kg/min", 1000.0 / 60.0, 0.0),
    "ng/kg/min": ("ug/kg/min", 1e-3, 0.0),
    # dose rate -> ug/min
    "ug/min": ("ug/min", 1.0, 0.0),
    "ug/h": ("ug/min", 1.0 / 60.0, 0.0),
    "mg/h": ("ug/min", 1000.0 / 60.0, 0.0),
    "mg/min": ("ug/min", 1000.0, 0.0),
}

_ANNOTATION = re.compile(r"\{[^}]*\}")


@lru_cache(maxsize=1024)
def _lookup(code: str) -> tuple[str, float, float] | None:
    hit = _TABLE.get(code)
    if hit is None and "{" in code:
        bare = _ANNOTATION.sub("", code)
        hit = _TABLE.get(bare[1:] if bare.startswith("1/") else bare)
    return hit


def canonical_unit(code: str) -> str | None:
    """The canonical unit for ``code``, or None if the unit is not in the table."""
    hit = _lookup(code)
    return hit[0] if hit else None


def canonical(code: str | None, value: float) -> tuple[str | None, float]:
    """``(canonical unit, canonical value)`` of a UCUM quantity; unknown units map to themselves."""
    if code is None:
        return None, value
    hit = _lookup(code)
    if hit is None:
        return code, value
    unit, factor, offset = hit
    return unit, value * factor + offset
