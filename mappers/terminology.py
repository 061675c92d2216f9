"""Code and unit normalisation: MDC terms (refid, display, vital-signs LOINC, default UCUM)
and vendor/ISO/HL7 unit codes or spellings to UCUM.

The tables are data in ``vendor_profiles/terminology/{mdc,units}.toml``, read with tomllib
on first use and cached (never at import).
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

MDC_SYSTEM = "urn:iso:std:iso:11073:10101"
LOINC_SYSTEM = "http://loinc.org"
UCUM_SYSTEM = "http://unitsofmeasure.org"
SNOMED_SYSTEM = "http://snomed.info/sct"
# a device's own codes (PB840 field ids, IntelliVue NOM ids): ``<prefix><vendor>``
VENDOR_CODE_PREFIX = "urn:vitalgate:vendor-code:"


@dataclass(frozen=True, slots=True)
class MdcTerm:
    """One MDC term as Vitalgate maps it."""

    code: str
    refid: str
    display: str
    loinc: str | None = None
    loinc_display: str | None = None
    extra_loinc: tuple[str, ...] = ()
    ucum: str | None = None
    vital: bool = False
    bp: str | None = None  # "sys" | "dia" | "mean" for blood-pressure components
    panel: str | None = None  # MDC code of the blood-pressure panel this component belongs to
    method: str | None = None  # "noninvasive" | "invasive"


def _load(name: str) -> dict[str, Any]:
    path = resources.files("vendor_profiles") / "terminology" / name
    return tomllib.loads(path.read_text(encoding="utf-8"))


@cache
def mdc_terms() -> dict[str, MdcTerm]:
    """All MDC terms by numeric code (as a string)."""
    terms = {}
    for code, row in _load("mdc.toml")["codes"].items():
        extra = tuple(row.pop("extra_loinc", ()))
        terms[code] = MdcTerm(code=code, extra_loinc=extra, **row)
    return terms


@cache
def mdc_by_refid() -> dict[str, MdcTerm]:
    """All MDC terms by reference id (``MDC_ECG_HEART_RATE``...)."""
    return {term.refid: term for term in mdc_terms().values()}


def mdc_term(code: str) -> MdcTerm | None:
    """The term for an MDC numeric code, or None when Vitalgate has no entry for it."""
    return mdc_terms().get(code)


@cache
def _units() -> dict[str, dict[str, str]]:
    return _load("units.toml")


def to_ucum(code: str, system: str = "", text: str = "") -> str | None:
    """UCUM code for a unit given as (code, coding system, text), or None when unknown.

    ``system`` is the HL7 coding system name from the CWE (``MDC``, ``MDIL``, ``UCUM``,
    ``ISO+``, ``ANSI+``...) or empty; spellings are tried for the code and then the text.
    """
    tables = _units()
    system = system.upper()
    if system == "MDC" and code in tables["mdc"]:
        return tables["mdc"][code]
    if system == "MDIL" and code.lower() in tables["mdil"]:
        return tables["mdil"][code.lower()]
    for spelling in (code, text) if system not in ("MDC", "MDIL") else (text,):
        found = spelling_to_ucum(spelling)
        if found:
            return found
    if system == "UCUM" and code:
        return code
    return None


def spelling_to_ucum(spelling: str) -> str | None:
    """UCUM for a common unit spelling (``bpm``, ``mmHg``, ``%``...), or None."""
    if not spelling:
        return None
    text = _units()["text"]
    return text.get(spelling) or text.get(spelling.lower())
