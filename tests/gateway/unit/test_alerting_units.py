"""``VITALGATE_ALERT_UNIT_RULESETS`` parsing (the lookup itself runs in tests/e2e/test_alert_pipeline.py)."""

from __future__ import annotations

import pytest

from gateway.alerting import ruleset_from_setting
from gateway.alerting.units import parse_unit_rulesets


def test_units_map_to_rulesets():
    by_unit = parse_unit_rulesets(" ICU=icu-limits, Ward 3=news2-ward ,", ruleset_from_setting)
    assert {unit: rs.name for unit, rs in by_unit.items()} == {"ICU": "icu-limits", "Ward 3": "news2-ward"}
    assert parse_unit_rulesets("", ruleset_from_setting) == {}


@pytest.mark.parametrize(("text", "message"), [("ICU", "not UNIT=ruleset"), ("=icu-limits", "not UNIT=ruleset"),
                                               ("ICU=nope", "nope")])
def test_bad_entries_name_what_is_wrong(text, message):
    with pytest.raises(ValueError, match=message):
        parse_unit_rulesets(text, ruleset_from_setting)
