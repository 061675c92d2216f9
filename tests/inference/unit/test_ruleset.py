"""Rule sets: shipped files load, invalid ones fail naming the file and the field."""

import pytest

from inference.errors import RulesetError
from inference.ruleset import builtin_ruleset, builtin_ruleset_names, load_ruleset, parse_ruleset
from inference.vitals import Param

HEAD = 'schema = 1\nname = "t"\nversion = "1.0.0"\nkind = "limits"\n'
LIMIT = '[[limit]]\nparam = "spo2"\ndirection = "low"\nset = 90\nclear = 92\nseverity = "moderate"\n'


def test_shipped_rulesets_load():
    assert builtin_ruleset_names() == ["icu-limits", "news2-ward"]
    ward = builtin_ruleset("news2-ward")
    assert ward.kind == "news2" and ward.news2 is not None
    assert ward.news2.min_alert_band == "low-medium"
    icu = builtin_ruleset("icu-limits")
    spo2 = [r for r in icu.limit if r.param is Param.SPO2]
    assert {(r.set, r.clear, r.severity) for r in spo2} == {(90, 92, "moderate"), (85, 88, "high")}


def test_unknown_builtin():
    with pytest.raises(RulesetError, match="nope.toml"):
        builtin_ruleset("nope")


def test_valid_minimal_limits():
    rs = parse_ruleset(HEAD + LIMIT)
    assert rs.limit[0].condition == "limit-spo2-low"
    assert rs.defaults.persistence_s == 0


def test_clear_on_wrong_side_names_field(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text(HEAD + LIMIT.replace("clear = 92", "clear = 85"))
    with pytest.raises(RulesetError) as info:
        load_ruleset(path)
    assert str(path) in str(info.value) and "limit[0]" in str(info.value)
    assert "clear must be >= set" in str(info.value)


def test_unknown_parameter_names_field():
    with pytest.raises(RulesetError, match=r"bad\.toml: limit\[0\]\.param"):
        parse_ruleset(HEAD + LIMIT.replace('"spo2"', '"glucose"'), "bad.toml")


def test_unknown_key_is_rejected():
    with pytest.raises(RulesetError, match=r"defaults\.persistance_s"):
        parse_ruleset(HEAD + "[defaults]\npersistance_s = 3\n" + LIMIT, "typo.toml")


def test_negative_persistence_rejected():
    with pytest.raises(RulesetError, match=r"limit\[0\]\.persistence_s"):
        parse_ruleset(HEAD + LIMIT + "persistence_s = -1\n", "neg.toml")


def test_bad_version_and_toml_syntax():
    with pytest.raises(RulesetError, match="MAJOR.MINOR.PATCH"):
        parse_ruleset(HEAD.replace("1.0.0", "v1") + LIMIT, "v.toml")
    with pytest.raises(RulesetError, match="syntax.toml: not valid TOML"):
        parse_ruleset("name = ", "syntax.toml")


def test_kind_news2_requires_table():
    with pytest.raises(RulesetError, match=r"news2\.toml: \(top level\).*\[news2\]"):
        parse_ruleset(HEAD.replace('"limits"', '"news2"'), "news2.toml")


def test_missing_file():
    with pytest.raises(RulesetError, match="cannot read"):
        load_ruleset("/nonexistent/rules.toml")


def test_patient_override_replaces_limit_and_sets_scale():
    text = HEAD + LIMIT + (
        '[patients.p7]\nspo2_scale = 2\n[[patients.p7.limit]]\nparam = "spo2"\n'
        'direction = "low"\nset = 86\nclear = 88\nseverity = "moderate"\n'
    )
    rs = parse_ruleset(text)
    assert [(r.set, r.clear) for r in rs.limits_for("p7")] == [(86, 88)]
    assert [(r.set, r.clear) for r in rs.limits_for("other")] == [(90, 92)]
    assert rs.spo2_scale_for("p7") == 2 and rs.spo2_scale_for("other") == 1


DEVIATION = ('[[deviation]]\nparam = "heart_rate"\ndirection = "high"\nset = 25\nclear = 15\n'
             'severity = "low"\n')
CONCORDANT = ('[[concordant]]\ncondition = "trend-multi"\nseverity = "low"\nchange = [\n'
              '  {param = "heart_rate", direction = "high", set = 12, clear = 8},\n'
              '  {param = "spo2", direction = "low", unit = "absolute", set = 2, clear = 1},\n]\n')


def test_deviation_and_concordant_rules_parse():
    rs = parse_ruleset(HEAD + LIMIT + DEVIATION + CONCORDANT)
    assert rs.deviation[0].condition == "trend-heart_rate-high"
    assert rs.deviation[0].change(100, 80) == 25.0 and rs.deviation[0].unit == "percent"
    assert rs.concordant[0].min_changes == 2 and rs.concordant[0].change[1].change(94, 97) == 3
    assert rs.concordant[0].score == "count"  # the default: each change past its own threshold
    shipped = builtin_ruleset("icu-limits")
    assert {d.condition for d in shipped.deviation} >= {"trend-heart_rate-high", "trend-systolic_bp-low",
                                                        "trend-spo2-low", "trend-resp_rate-high"}
    assert [c.condition for c in shipped.concordant] == ["trend-multi"]


def test_deviation_clear_past_set_names_field():
    with pytest.raises(RulesetError, match=r"deviation\[0\].*clear must be <= set"):
        parse_ruleset(HEAD + LIMIT + DEVIATION.replace("clear = 15", "clear = 30"), "d.toml")


def test_concordant_needs_enough_changes():
    with pytest.raises(RulesetError, match="min_changes 3 > 2"):
        parse_ruleset(HEAD + LIMIT + CONCORDANT.replace('severity = "low"', 'severity = "low"\nmin_changes = 3'))
    with pytest.raises(RulesetError, match=r"concordant\[0\].condition"):
        parse_ruleset(HEAD + LIMIT + CONCORDANT.replace("trend-multi", "multi"))
