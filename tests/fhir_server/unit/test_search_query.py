"""parse_search: prefixes, modifiers, chains, result parameters, errors (FhirError 400)."""

from __future__ import annotations

import pytest

from fhir_server.errors import FhirError
from fhir_server.search import (
    DateValue,
    NumberValue,
    QuantityValue,
    ReferenceValue,
    StringValue,
    TextValue,
    TokenValue,
    parse_search,
    search_params,
    searchable_types,
)

DAY = 86_400_000_000
MAY1 = 1_714_521_600_000_000  # 2024-05-01T00:00:00Z


def one(rt: str, name: str, raw: str):  # type: ignore[no-untyped-def]
    (c,) = parse_search(rt, [(name, raw)], strict=True).clauses
    return c


def bad(rt: str, params: list[tuple[str, str]], strict: bool = True) -> FhirError:
    with pytest.raises(FhirError) as e:
        parse_search(rt, params, strict=strict)
    assert e.value.status == 400
    return e.value


def test_registry_covers_the_brief() -> None:
    assert {"Patient", "Observation", "Device", "Encounter", "Location", "DetectedIssue",
            "RiskAssessment", "Subscription", "AuditEvent", "MedicationAdministration",
            "SubscriptionTopic"} <= set(searchable_types())
    obs = search_params("Observation")
    assert obs["patient"].target_types == ("Patient",)
    assert obs["date"].paths == ("effective[x]",)
    assert obs["_id"].type == "token" and obs["_lastUpdated"].type == "date"
    assert search_params("RiskAssessment")["probability"].type == "number"
    assert search_params("Nope") == {}


def test_date_prefixes_and_precision() -> None:
    c = one("Observation", "date", "2024-05-01")
    assert c.values == (DateValue("eq", MAY1, MAY1 + DAY - 1),)
    for p in ("eq", "ne", "gt", "lt", "ge", "le", "sa", "eb"):
        (v,) = one("Observation", "date", f"{p}2024-05").values
        assert v == DateValue(p, MAY1, MAY1 + 31 * DAY - 1)
    (v,) = one("Observation", "date", "ge2024-05-01T10:00+02:00").values
    assert v == DateValue("ge", MAY1 + 8 * 3600_000_000, MAY1 + 8 * 3600_000_000 + 59_999_999)
    # "+" decoded as a space by a client that did not percent-encode it
    assert one("Observation", "date", "ge2024-05-01T10:00 02:00").values == (v,)
    (ap,) = one("Observation", "date", "ap2024-05-01").values
    assert ap.prefix == "ap" and ap.lo < MAY1 and ap.hi > MAY1 + DAY - 1


def test_number_and_quantity() -> None:
    (n,) = one("RiskAssessment", "probability", "gt0.5").values
    assert n == NumberValue("gt", 0.5, 0.45, 0.55)
    (n,) = one("RiskAssessment", "probability", "100").values
    assert (n.lo, n.hi) == (99.5, 100.5)
    (n,) = one("RiskAssessment", "probability", "ap100").values
    assert (n.lo, n.hi) == (90.0, 110.0)
    (q,) = one("Observation", "value-quantity", "le5.4|http://unitsofmeasure.org|mg").values
    assert isinstance(q, QuantityValue) and q.canon and q.code == "g"
    assert q.number.prefix == "le" and abs(q.number.value - 0.0054) < 1e-12
    (q,) = one("Observation", "value-quantity", "37||Cel").values
    assert q.canon and q.code == "Cel" and q.number.value == 37.0
    (q,) = one("Observation", "value-quantity", "5|urn:vendor|xyz").values
    assert q == QuantityValue(NumberValue("eq", 5.0, 4.5, 5.5), "urn:vendor", "xyz", False)
    (q,) = one("Observation", "value-quantity", "5").values
    assert (q.system, q.code, q.canon) == (None, None, False)


def test_token_forms_and_or_values() -> None:
    c = one("Observation", "code", "http://loinc.org|8867-4,8310-5,|nosys,urn:x|")
    assert c.values == (TokenValue("http://loinc.org", "8867-4"), TokenValue(None, "8310-5"),
                        TokenValue(None, "nosys", no_system=True), TokenValue("urn:x", None))
    c = one("Observation", "code:text", "Heart Rate")
    assert c.values == (TextValue("heart rate"),)
    c = one("Observation", "status:not", "final")
    assert c.negate and c.values == (TokenValue(None, "final"),)
    # escaped comma and pipe are literal
    c = one("Observation", "identifier", r"urn:a|x\,y\|z")
    assert c.values == (TokenValue("urn:a", "x,y|z"),)


def test_string_modifiers() -> None:
    assert one("Patient", "name", "Mül").values == (StringValue("mul", "start"),)
    assert one("Patient", "name:contains", "ÜLL").values == (StringValue("ull", "contains"),)
    assert one("Patient", "name:exact", "Müller").values == (StringValue("Müller", "exact"),)


def test_missing_reference_type_and_chain() -> None:
    c = one("Observation", "encounter:missing", "true")
    assert c.missing is True and c.values == ()
    c = one("Observation", "subject:Patient", "p1")
    assert c.values == (ReferenceValue("Patient", "p1", None),)
    c = one("Observation", "subject", "Patient/p1,https://x.org/fhir/Patient/p2")
    assert c.values == (ReferenceValue("Patient", "p1", None),
                        ReferenceValue(None, None, "https://x.org/fhir/Patient/p2"))
    c = one("Observation", "subject:Patient.identifier", "urn:mrn|123")
    ((t, inner),) = c.chain
    assert t == "Patient" and inner.param.key == "Patient.identifier"
    assert inner.values == (TokenValue("urn:mrn", "123"),)
    c = one("Observation", "patient.name", "anna")
    assert [t for t, _ in c.chain] == ["Patient"]


def test_result_parameters_and_links() -> None:
    q = parse_search("Observation", [
        ("patient", "p1"), ("code", "http://loinc.org|8867-4"), ("bogus", "1"),
        ("_sort", "-date,_id"), ("_count", "5000"), ("_include", "Observation:subject:Patient"),
        ("_revinclude", "DetectedIssue:implicated"), ("_summary", "count"), ("_total", "accurate"),
        ("_elements", "id,code"), ("_offset", "40"), ("_snapshot", "99"), ("_format", "json"),
    ], strict=False)
    assert q.count == 1000  # capped
    assert [(k.param.name, k.descending) for k in q.sort] == [("date", True), ("_id", False)]
    assert q.includes[0].target_type == "Patient"
    assert q.includes[0].params[0].key == "Observation.subject"
    assert q.revincludes[0].source_type == "DetectedIssue"
    assert (q.summary, q.total, q.elements) == ("count", "accurate", ("id", "code"))
    assert (q.offset, q.snapshot) == (40, 99)
    assert q.ignored == (("bogus", "1"),)
    assert q.to_params() == [
        ("patient", "p1"), ("code", "http://loinc.org|8867-4"), ("_sort", "-date,_id"),
        ("_include", "Observation:subject:Patient"), ("_revinclude", "DetectedIssue:implicated"),
        ("_count", "1000"), ("_summary", "count"), ("_total", "accurate"),
        ("_elements", "id,code"), ("_snapshot", "99"), ("_offset", "40"),
    ]
    nxt = q.with_page(1040, 99)
    assert ("_offset", "1040") in nxt.to_params() and nxt.clauses == q.clauses
    default = parse_search("Observation", [], strict=True)
    assert default.count == 20 and default.to_params() == [("_count", "20")]
    star = parse_search("Observation", [("_include", "Observation:*")], strict=True)
    assert {p.name for p in star.includes[0].params} == {
        "patient", "subject", "device", "encounter"}


def test_lenient_ignores_unknown_and_empty() -> None:
    q = parse_search("Patient", [("foo", "x"), ("name", ""), ("_sort", "nope"),
                                 ("_include:iterate", "Patient:link")], strict=False)
    assert q.clauses == () and q.sort == ()
    assert q.ignored == (("foo", "x"), ("name", ""), ("_sort", "nope"),
                         ("_include:iterate", "Patient:link"))


@pytest.mark.parametrize("params", [
    [("foo", "x")],                                   # unknown, strict
    [("_sort", "nope")],                              # unknown sort key, strict
    [("subject:Patient.foo", "x")],                   # unknown chained parameter, strict
])
def test_strict_rejects_unknown(params: list[tuple[str, str]]) -> None:
    err = bad("Observation", params)
    assert err.outcome["issue"][0]["expression"] == [params[0][0]]


@pytest.mark.parametrize(("name", "raw", "text"), [
    ("date", "2024-13", "bad month"),
    ("date", "yesterday", "unknown prefix 'ye'"),
    ("date", "2024/05/01", "not a FHIR date"),
    ("date", "xx2024", "unknown prefix 'xx'"),
    ("date", "2024-02-30", "bad day"),
    ("value-quantity", "1a2", "not a number"),
    ("value-quantity", "5|mg", "[prefix]number[|system|code]"),
    ("value-quantity", "1e999", "number out of range"),  # float overflow: was a 500
    ("value-quantity", "gt0e400", "number out of range"),  # a finite value, its precision's range is not
    ("code", "a|b|c", "[system]|[code]"),
    ("code:exact", "x", "Modifier :exact is not supported"),
    ("date:contains", "2024", "Modifier :contains"),
    ("patient:Device", "d1", "Modifier :Device"),
    ("code:in", "http://vs", "Modifier :in"),
    ("encounter:missing", "maybe", ":missing takes true or false"),
    ("code.system", "x", "Only reference parameters can be chained"),
    ("subject.organization.name", "x", "Only one level of chaining"),
    ("_count", "ten", "_count must be an integer"),
    ("_count", "-1", "_count must be >= 0"),
    ("_summary", "yes", "_summary must be one of"),
    ("_total", "all", "_total must be one of"),
    ("_include", "Patient:link", "_include source must be Observation"),
    ("_include", "Observation:code", "not a reference parameter"),
    ("_revinclude", "Observation", "Type:param[:targetType]"),
    ("_id:missing", "true", "Modifier :missing is not supported"),
    ("subject", "a/b/c", "not a reference"),
])
def test_bad_values_are_400(name: str, raw: str, text: str) -> None:
    err = bad("Observation", [(name, raw)], strict=False)
    issue = err.outcome["issue"][0]
    assert text in issue["diagnostics"]
    assert issue["expression"] == [name]


def test_unsearchable_type() -> None:
    assert bad("Basic", []).code == "not-supported"


def test_capability_helpers() -> None:
    from fhir_server.search import capability_search_params, include_names, revinclude_names

    assert include_names("Location") == ["Location:partof", "Location:*"]
    assert include_names("Subscription") == []
    assert set(revinclude_names("Encounter")) == {
        "Observation:encounter", "DetectedIssue:implicated", "RiskAssessment:encounter",
        "AuditEvent:agent", "AuditEvent:entity", "MedicationAdministration:context"}
    sub = {p["name"]: p["type"] for p in capability_search_params("Subscription")}
    assert sub == {"_id": "token", "_lastUpdated": "date", "_tag": "token", "_profile": "uri",
                   "_security": "token", "status": "token",
                   "criteria": "string", "url": "uri", "type": "token", "payload": "token"}


def test_links_parse_back_to_the_same_search() -> None:
    params = [("patient", "p1"), ("code", r"http://loinc.org|8867-4,urn:x|a\,b"),
              ("date", "ge2024-05-01T10:00:00Z"), ("date", "lt2024-05-02"),
              ("subject:Patient.identifier", "urn:mrn|1"), ("status:not", "final"),
              ("_sort", "-date"), ("_include", "Observation:device"), ("_count", "7"),
              ("_elements", "id")]
    q = parse_search("Observation", params, strict=True).with_page(14, 99)
    again = parse_search("Observation", q.to_params(), strict=True)
    assert again == q
