"""Vendor profiles: the shipped files validate, map the documented codes, and broken files are
refused with the file and the field named."""

from __future__ import annotations

import pytest

from mappers.profiles import (
    ProfileError,
    check_all,
    load_all,
    load_profile,
    load_profile_file,
    merged_code_aliases,
    merged_unit_aliases,
    profile_names,
)

GOOD = """
vendor = "Acme"
manufacturer = "Acme Medical"
models = ["M1"]
device_type = "monitor"

[transport]
kind = "mllp"

[timing]
reporting_interval_s = 1.0
stale_timeout_s = 10.0

[coding]
code_system = "MDIL"
unit_system = "MDIL"

[[units]]
code = "0004-0aa0"
label = "bpm"
ucum = "/min"

[[codes]]
key = "hr"
code = "0002-4182"
label = "HR"
display = "Heart rate"
unit = "0004-0aa0"
mdc = "147842"
mdc_refid = "MDC_ECG_HEART_RATE"
"""


def write(tmp_path, name, text):
    path = tmp_path / f"{name}.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_shipped_profiles_all_valid():
    assert check_all() == []
    names = profile_names()
    for expected in ("philips-intellivue-piic", "medtronic-pb840", "medtronic-pb980",
                     "baxter-spectrum-iq"):
        assert expected in names
    assert {p.id for p in load_all()} == set(names)


def test_piic_code_aliases_from_documented_table():
    aliases = load_profile("philips-intellivue-piic").code_aliases()
    assert aliases[("MDIL", "0002-4182")] == "147842"  # HR
    assert aliases[("MDIL", "0002-4bb8")] == "150456"  # SpO2
    assert aliases[("MDIL", "0002-4a05")] == "150021"  # NBPs
    assert aliases[("MDIL", "0002-4a17")] == "150039"  # ABPm
    assert aliases[("MDIL", "0002-500a")] == "151562"  # RR
    assert aliases[("MDIL", "0002-e004")] == "188420"  # Trect
    # documented codes where the reference says hex arithmetic differs
    assert aliases[("MDIL", "0002-50b0")] == "151708"  # etCO2, not 151728
    assert aliases[("MDIL", "0002-4822")] == "149530"  # pleth pulse, not 149538
    assert aliases[("MDIL", "0002-4BB8")] == "150456"  # hex matched in either case


def test_piic_unit_aliases():
    units = load_profile("philips-intellivue-piic").unit_aliases()
    assert units[("MDIL", "0004-0aa0")] == "/min"
    assert units[("MDIL", "0004-0220")] == "%"
    assert units[("MDIL", "0004-0f20")] == "mm[Hg]"
    assert units[("MDIL", "0004-0ae0")] == "/min"
    assert units[("MDIL", "0004-17a0")] == "Cel"
    assert units[("MDIL", "0004-0c32")] == "mL/h"


def test_piic_loinc_for_vitals():
    p = load_profile("philips-intellivue-piic")
    by_key = {c.key: c for c in p.codes}
    assert by_key["hr"].loinc == "8867-4" and by_key["hr"].vital_sign
    assert by_key["spo2"].loinc == "2708-6"
    assert by_key["nbp_sys"].loinc == "8480-6"
    assert by_key["temp"].loinc == "8310-5"


def test_baxter_ipec_codes():
    p = load_profile("baxter-spectrum-iq")
    assert p.transport.kind == "mllp"
    aliases = p.code_aliases()
    assert aliases[("MDC", "157784")] == "157784"  # MDC_FLOW_FLUID_PUMP
    assert aliases[("MDC", "157884")] == "157884"  # VTBI, not 157985 (PCA limit)
    assert ("MDC", "157985") not in aliases
    assert p.unit_aliases()[("MDC", "265266")] == "mL/h"
    assert p.unit_aliases()[("MDC", "265619")] == "ug/kg/min"


def test_pb840_profile_layout():
    p = load_profile("medtronic-pb840")
    assert p.transport.kind == "pb840-serial-tcp"
    assert p.transport.poll_command == "SNDF"
    assert p.transport.poll_interval_s == 2.0
    assert p.timing.stale_timeout_s == 10.0
    assert p.record("MISCF").field_counts == [169]
    assert p.record("MISCA").field_counts == [97]
    assert p.unit("L").ucum == "mL" and p.unit("L").factor == 1000.0
    ftot = next(c for c in p.codes if c.key == "ftot")
    assert (ftot.record, ftot.field, ftot.loinc) == ("MISCF", 70, "9279-1")
    # a scaled unit is never offered as an alias
    assert ("PB840", "L") not in p.unit_aliases()


def test_pb980_extends_pb840():
    p840, p980 = load_profile("medtronic-pb840"), load_profile("medtronic-pb980")
    assert p980.models == ["980"]
    assert p980.manufacturer == p840.manufacturer
    by_field = {(c.record, c.field): c for c in p980.codes}
    assert by_field[("MISCF", 153)].key == "al_etco2_high"
    assert by_field[("MISCF", 161)].mdc == "151708"
    assert by_field[("MISCF", 70)].key == "ftot"
    assert len(p980.codes) == len(p840.codes) + 1


def test_merged_aliases_cover_all_hl7_profiles():
    codes = merged_code_aliases(load_all())
    units = merged_unit_aliases(load_all())
    assert codes[("MDIL", "0002-4182")] == "147842"
    assert codes[("MDC", "157872")] == "157872"
    assert units[("MDIL", "0004-0f20")] == "mm[Hg]"


def test_good_file_loads(tmp_path):
    p = load_profile_file(write(tmp_path, "acme", GOOD))
    assert p.id == "acme"
    assert p.code_aliases() == {("MDIL", "0002-4182"): "147842"}


@pytest.mark.parametrize(
    ("old", "new", "where"),
    [
        ('kind = "mllp"', 'kind = "carrier-pigeon"', "transport"),
        ("stale_timeout_s = 10.0", "stale_timeout_s = 0.5", "timing"),
        ('mdc = "147842"', 'mdc = "14x842"', "codes[0].mdc"),
        ('unit = "0004-0aa0"', 'unit = "0004-ffff"', "unit '0004-ffff'"),
        ('device_type = "monitor"', 'device_type = "toaster"', "device_type"),
        ('label = "HR"', 'label = "HR"\nbogus = 1', "codes[0].bogus"),
        ('vendor = "Acme"\n', "", "vendor"),
    ],
)
def test_broken_profile_names_file_and_field(tmp_path, old, new, where):
    assert old in GOOD
    path = write(tmp_path, "acme", GOOD.replace(old, new, 1))
    with pytest.raises(ProfileError) as info:
        load_profile_file(path)
    message = str(info.value)
    assert str(path) in message
    assert where in message


def test_invalid_toml_and_wrong_id(tmp_path):
    with pytest.raises(ProfileError, match="invalid TOML"):
        load_profile_file(write(tmp_path, "bad", "vendor = "))
    with pytest.raises(ProfileError, match="must equal the file name"):
        load_profile_file(write(tmp_path, "acme", 'id = "other"\n' + GOOD))


def test_extends_missing_parent(tmp_path):
    with pytest.raises(ProfileError, match="file not found"):
        load_profile_file(write(tmp_path, "child", 'extends = "nope"\n' + GOOD))


def test_pb840_profile_codes_need_record_and_field(tmp_path):
    pb = GOOD.replace('kind = "mllp"', 'kind = "pb840-serial-tcp"')
    with pytest.raises(ProfileError, match=r"\[\[records\]\]"):
        load_profile_file(write(tmp_path, "acme", pb))


def test_intellivue_data_export_profile():
    p = load_profile("philips-intellivue-mp")
    assert p.transport.kind == "intellivue-udp"
    assert (p.transport.connect_indication_port, p.transport.association_port) == (24005, 24105)
    aliases = p.code_aliases()
    assert aliases[("NOM", "4182")] == "147842"
    assert aliases[("NOM", "50b0")] == "151708"
    assert p.unit_aliases()[("NOM_DIM", "0f20")] == "mm[Hg]"
