"""UCUM canonicalisation: factors from the UCUM definitions, written by hand."""

from __future__ import annotations

import pytest

from fhir_server.search import canonical, canonical_unit


@pytest.mark.parametrize(("code", "value", "unit", "expected"), [
    ("mm[Hg]", 1.0, "Pa", 133.322387415),
    ("mm[Hg]", 120.0, "Pa", 15998.6864898),
    ("kPa", 16.0, "Pa", 16000.0),
    ("cm[H2O]", 10.0, "Pa", 980.665),
    ("mbar", 5.0, "Pa", 500.0),
    ("Cel", 37.0, "Cel", 37.0),
    ("[degF]", 98.6, "Cel", 37.0),
    ("[degF]", 32.0, "Cel", 0.0),
    ("[degF]", -40.0, "Cel", -40.0),  # the two scales cross at -40
    ("K", 310.15, "Cel", 37.0),
    ("mL", 500.0, "L", 0.5),
    ("L", 2.0, "L", 2.0),
    ("kg", 70.0, "g", 70000.0),
    ("mg", 5.0, "g", 0.005),
    ("ug", 250.0, "g", 0.00025),
    ("[lb_av]", 1.0, "g", 453.59237),
    ("/min", 72.0, "/min", 72.0),
    ("{beats}/min", 72.0, "/min", 72.0),
    ("/s", 1.0, "/min", 60.0),
    ("%", 97.0, "%", 97.0),
    ("h", 2.0, "s", 7200.0),
    ("min", 1.5, "s", 90.0),
    ("mL/h", 12.5, "mL/h", 12.5),
    ("L/min", 6.0, "mL/h", 360000.0),
    ("ug/kg/min", 5.0, "ug/kg/min", 5.0),
    ("mg/kg/h", 0.6, "ug/kg/min", 10.0),
])
def test_known_units(code: str, value: float, unit: str, expected: float) -> None:
    got_unit, got = canonical(code, value)
    assert got_unit == unit
    assert got == pytest.approx(expected, rel=1e-9, abs=1e-9)


def test_unknown_units_are_their_own_canonical() -> None:
    assert canonical("mmol/L", 4.2) == ("mmol/L", 4.2)
    assert canonical("{score}", 3.0) == ("{score}", 3.0)
    assert canonical(None, 1.0) == (None, 1.0)
    assert canonical_unit("mmol/L") is None
    assert canonical_unit("{breaths}/min") == "/min"
