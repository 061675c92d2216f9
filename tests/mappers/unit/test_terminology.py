"""MDC / LOINC / UCUM tables, with expected rows typed from the reference tables."""

import pytest

from mappers import terminology
from mappers.terminology import mdc_by_refid, mdc_term, spelling_to_ucum, to_ucum


@pytest.mark.parametrize(("code", "refid", "loinc", "ucum"), [
    ("147842", "MDC_ECG_HEART_RATE", "8867-4", "/min"),
    ("150456", "MDC_PULS_OXIM_SAT_O2", "2708-6", "%"),
    ("151562", "MDC_RESP_RATE", "9279-1", "/min"),
    ("151570", "MDC_AWAY_RESP_RATE", "9279-1", "/min"),
    ("150021", "MDC_PRESS_BLD_NONINV_SYS", "8480-6", "mm[Hg]"),
    ("150022", "MDC_PRESS_BLD_NONINV_DIA", "8462-4", "mm[Hg]"),
    ("150023", "MDC_PRESS_BLD_NONINV_MEAN", "8478-0", "mm[Hg]"),
    ("150035", "MDC_PRESS_BLD_ART_MEAN", "8478-0", "mm[Hg]"),
    ("150344", "MDC_TEMP", "8310-5", "Cel"),
    ("188420", "MDC_TEMP_RECT", "8310-5", "Cel"),
    ("151708", "MDC_AWAY_CO2_ET", "19891-1", "mm[Hg]"),
    ("68063", "MDC_ATTR_PT_WEIGHT", "29463-7", "kg"),
    ("150448", "MDC_PULS_OXIM_PERF_REL", None, "{ratio}"),
])
def test_vital_sign_rows(code: str, refid: str, loinc: str | None, ucum: str) -> None:
    term = mdc_term(code)
    assert term is not None
    assert (term.refid, term.loinc, term.ucum) == (refid, loinc, ucum)
    assert term.vital == (loinc is not None)


def test_extra_loinc_and_bp_panels() -> None:
    assert mdc_term("150456").extra_loinc == ("59408-5",)
    assert mdc_term("150021").extra_loinc == ("76534-7",)
    nbp = mdc_term("150021")
    assert (nbp.bp, nbp.panel, nbp.method) == ("sys", "150020", "noninvasive")
    art = mdc_term("150034")
    assert (art.bp, art.panel, art.method) == ("dia", "150032", "invasive")
    assert mdc_term("150020").loinc == "85354-9"


@pytest.mark.parametrize(("code", "refid"), [
    ("157784", "MDC_FLOW_FLUID_PUMP"), ("157924", "MDC_RATE_DOSE"),
    ("157884", "MDC_VOL_FLUID_TBI"), ("157872", "MDC_VOL_FLUID_TBI_REMAIN"),
    ("157993", "MDC_VOL_FLUID_DELIV_TOTAL"), ("184514", "MDC_DRUG_NAME_LABEL"),
    ("157760", "MDC_CONC_DRUG"), ("184519", "MDC_PUMP_INFUSING_STATUS"),
])
def test_infusion_codes_from_ipec(code: str, refid: str) -> None:
    term = mdc_term(code)
    assert term is not None and term.refid == refid and term.loinc is None
    assert mdc_by_refid()[refid].code == code


def test_wrong_public_snippet_codes_are_absent() -> None:
    assert mdc_term("157985") is None and mdc_term("158480") is None


@pytest.mark.parametrize(("code", "system", "text", "ucum"), [
    ("264864", "MDC", "", "/min"), ("262688", "MDC", "", "%"), ("266016", "MDC", "", "mm[Hg]"),
    ("264928", "MDC", "", "/min"), ("268192", "MDC", "", "Cel"), ("266048", "MDC", "", "cm[H2O]"),
    ("263762", "MDC", "", "mL"), ("265266", "MDC", "", "mL/h"), ("265619", "MDC", "", "ug/kg/min"),
    ("0004-0aa0", "MDIL", "bpm", "/min"), ("0004-0220", "MDIL", "%", "%"),
    ("0004-0F20", "MDIL", "mmHg", "mm[Hg]"), ("0004-0ae0", "MDIL", "rpm", "/min"),
    ("0004-17a0", "MDIL", "", "Cel"), ("0004-0f40", "MDIL", "", "cm[H2O]"),
    ("0004-0652", "MDIL", "", "mL"), ("0004-0c32", "MDIL", "", "mL/h"),
    ("{beat}/min", "UCUM", "", "/min"), ("mm[Hg]", "UCUM", "", "mm[Hg]"),
    ("mg/dl", "", "", "mg/dL"), ("bpm", "", "", "/min"), ("", "", "mmHg", "mm[Hg]"),
    ("mm(hg)", "ISO+", "", "mm[Hg]"), ("CEL", "ISO+", "", "Cel"), ("BEATS/MIN", "ANSI+", "", "/min"),
])
def test_units(code: str, system: str, text: str, ucum: str) -> None:
    assert to_ucum(code, system, text) == ucum


def test_unknown_units() -> None:
    assert to_ucum("999999", "MDC") is None
    assert to_ucum("0004-ffff", "MDIL", "furlongs") is None
    assert spelling_to_ucum("") is None and spelling_to_ucum("furlongs") is None


def test_tables_load_lazily_and_once() -> None:
    terminology.mdc_terms.cache_clear()
    assert terminology.mdc_terms.cache_info().currsize == 0
    assert mdc_term("147842") is mdc_term("147842")
    assert terminology.mdc_terms.cache_info().currsize == 1
