"""The database-free engine: Observation dicts in, DetectedIssue / score / risk resources out."""

from datetime import UTC, datetime, timedelta

from fhir.resources.R4B.detectedissue import DetectedIssue
from fhir.resources.R4B.observation import Observation
from fhir.resources.R4B.riskassessment import RiskAssessment

from inference.engine import Engine
from inference.features import FEATURES
from inference.model import RiskModel
from inference.registry import ModelHandle
from inference.ruleset import builtin_ruleset
from inference.technical import DeviceStatus

T0 = datetime(2026, 11, 28, 13, 0, tzinfo=UTC)
MDC = "urn:iso:std:iso:11073:10101"
LOINC = "http://loinc.org"


def obs(oid, second, system, code, value, unit="%", patient="p1"):
    return {
        "resourceType": "Observation", "id": oid, "status": "final",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                                  "code": "vital-signs"}]}],
        "code": {"coding": [{"system": system, "code": code}]},
        "subject": {"reference": f"Patient/{patient}"}, "device": {"reference": "Device/mon-1"},
        "effectiveDateTime": (T0 + timedelta(seconds=second)).isoformat(),
        "valueQuantity": {"value": value, "unit": unit, "system": "http://unitsofmeasure.org",
                          "code": unit},
    }


def of_type(effects, resource_type):
    return [r for r in effects.resources if r["resourceType"] == resource_type]


def feed(engine, observations):
    out = []
    for o in observations:
        out.extend(engine.on_observation(o).resources)
    return out


def test_icu_desaturation_one_alert_then_resolved():
    engine = Engine(builtin_ruleset("icu-limits"))
    out = feed(engine, [obs(f"s{t}", t, MDC, "150456", 89) for t in range(0, 61)])
    issues = [r for r in out if r["resourceType"] == "DetectedIssue"]
    assert len({r["id"] for r in issues}) == 1  # one alert, updated, never duplicated
    first = issues[0]
    DetectedIssue.model_validate(first)
    assert (first["status"], first["severity"]) == ("preliminary", "moderate")
    assert first["identifiedPeriod"]["start"] == T0.isoformat()
    assert first["implicated"] == [{"reference": "Device/mon-1"}]
    assert first["author"] == {"reference": "Device/rules-icu-limits-1.2.0"}
    out = feed(engine, [obs(f"s{t}", t, MDC, "150456", 95) for t in range(61, 92)])
    [final] = [r for r in out if r["resourceType"] == "DetectedIssue"]
    assert final["id"] == first["id"] and final["status"] == "final"
    assert final["identifiedPeriod"]["end"] == (T0 + timedelta(seconds=91)).isoformat()
    assert engine.alerts == {}


def test_stable_patient_raises_nothing():
    engine = Engine(builtin_ruleset("icu-limits"))
    out = feed(engine, [obs(f"s{t}", t, MDC, "150456", 97) for t in range(0, 120)])
    assert out == []


def test_a_quiet_value_still_ends_a_pending_condition():
    # quiet values of an idle condition are not evaluated at all (rules.evaluate_limits' idle
    # check); while a condition is pending they are, and a value past the clear threshold ends it
    engine = Engine(builtin_ruleset("icu-limits"))
    out = feed(engine, [obs(f"a{t}", t, MDC, "150456", 89) for t in range(0, 10)])
    out += feed(engine, [obs("q10", 10, MDC, "150456", 93)])  # past clear (92): persistence restarts
    out += feed(engine, [obs(f"b{t}", t, MDC, "150456", 89) for t in range(11, 27)])
    [opened] = [r for r in out if r["resourceType"] == "DetectedIssue"]
    assert opened["identifiedPeriod"]["start"] == (T0 + timedelta(seconds=11)).isoformat()
    assert [e["detail"][0]["reference"] for e in opened["evidence"]][:1] == ["Observation/b11"]


def _ward_set(second, rr=16, patient="w1"):
    return [
        obs(f"rr{second}", second, LOINC, "9279-1", rr, "/min", patient),
        obs(f"sp{second}", second, LOINC, "59408-5", 97, "%", patient),
        obs(f"bp{second}", second, LOINC, "8480-6", 120, "mm[Hg]", patient),
        obs(f"hr{second}", second, MDC, "147842", 70, "/min", patient),
        obs(f"t{second}", second, LOINC, "8310-5", 37.0, "Cel", patient),
        obs(f"o2{second}", second, LOINC, "3151-8", 0, "L/min", patient),
        {**obs(f"c{second}", second, LOINC, "67775-7", 0, "", patient),
         "valueQuantity": None, "valueString": "A"},
    ]


def test_ward_news2_score_written_on_change_only():
    engine = Engine(builtin_ruleset("news2-ward"))
    first = feed(engine, _ward_set(0))
    scores = [r for r in first if r["resourceType"] == "Observation"]
    assert len(scores) == 1 and scores[0]["valueInteger"] == 0
    Observation.model_validate(scores[0])
    assert feed(engine, _ward_set(60)) == []  # same score, inside the interval
    changed = feed(engine, [obs("rr-high", 120, LOINC, "9279-1", 25, "/min", "w1")])
    [score] = [r for r in changed if r["resourceType"] == "Observation"]
    assert score["valueInteger"] == 3  # RR 25 scores 3: low-medium band
    assert not [r for r in changed if r["resourceType"] == "DetectedIssue"]  # 20 s persistence (1.1.0)
    changed = feed(engine, [obs("rr-high2", 140, LOINC, "9279-1", 25, "/min", "w1")])
    [issue] = [r for r in changed if r["resourceType"] == "DetectedIssue"]
    assert issue["severity"] == "moderate" and issue["code"]["coding"][0]["code"] == "news2"


def test_acknowledge_and_false_alarm():
    engine = Engine(builtin_ruleset("icu-limits"))
    feed(engine, [obs(f"s{t}", t, MDC, "150456", 89) for t in range(0, 16)])
    [episode] = engine.alerts
    acked = engine.acknowledge(episode, "Practitioner/n1", T0 + timedelta(seconds=20))
    assert acked["mitigation"][0]["author"] == {"reference": "Practitioner/n1"}
    wrong = engine.mark_false_alarm(episode, "Practitioner/n1", T0 + timedelta(seconds=25))
    DetectedIssue.model_validate(wrong)
    assert wrong["status"] == "entered-in-error"
    # the condition persists, but the withdrawn alert is not re-raised until it clears
    assert feed(engine, [obs(f"s{t}", t, MDC, "150456", 89) for t in range(26, 120)]) == []


def test_device_status_technical_alert():
    engine = Engine(builtin_ruleset("icu-limits"))
    effects = engine.on_device_status(DeviceStatus("mon-1", "p1", T0, False, T0))
    [issue] = effects.resources
    assert issue["code"]["coding"][0]["code"] == "technical-disconnected"
    assert issue["implicated"] == [{"reference": "Device/mon-1"}]


def test_model_risk_assessment(trained):
    out_dir = trained[0]
    model = RiskModel.from_file(out_dir / "deterioration.onnx", "deterioration", "1.0.0", FEATURES)
    engine = Engine(builtin_ruleset("icu-limits"), ModelHandle(model))
    stream = []
    for minute in range(16):  # septic picture developing over 15 minutes
        s = minute * 60
        stream += [
            obs(f"hr{s}", s, MDC, "147842", 95 + 2 * minute, "/min"),
            obs(f"rr{s}", s, MDC, "151562", 20 + 0.6 * minute, "/min"),
            obs(f"bp{s}", s, MDC, "150021", 110 - 2 * minute, "mm[Hg]"),
            obs(f"t{s}", s, MDC, "150344", 38.5, "Cel"),
            obs(f"sp{s}", s, MDC, "150456", 94, "%"),
        ]
    out = feed(engine, stream)
    risks = [r for r in out if r["resourceType"] == "RiskAssessment"]
    assert risks
    RiskAssessment.model_validate(risks[-1])
    assert risks[-1]["prediction"][0]["probabilityDecimal"] > 0.8
    assert risks[-1]["performer"] == {"reference": "Device/model-deterioration-1.0.0"}
    model_alerts = [r for r in out if r["resourceType"] == "DetectedIssue"
                    and r["code"]["coding"][0]["code"] == "model-deterioration"]
    assert model_alerts and model_alerts[0]["severity"] == "low"


def test_model_advisory_hysteresis_keeps_the_persistence_window(trained):
    """Risk alternating every 10 s between about 0.9 (HR 125) and 0.67 (HR 105): above the clear
    threshold (0.6) the 2-minute window keeps going and the advisory opens; with no hysteresis
    (clear = set = 0.8) every dip restarts the window and it never opens."""
    model = RiskModel.from_file(trained[0] / "deterioration.onnx", "deterioration", "1.0.0", FEATURES)

    def stream():
        out = []
        for s in range(0, 200, 5):
            heart = 125 if (s // 10) % 2 == 0 else 105
            out += [obs(f"hr{s}", s, MDC, "147842", heart, "/min"),
                    obs(f"rr{s}", s, MDC, "151562", 22, "/min"),
                    obs(f"sp{s}", s, MDC, "150456", 95, "%"),
                    obs(f"bp{s}", s, MDC, "150021", 100, "mm[Hg]"),
                    obs(f"t{s}", s, MDC, "150344", 38.0, "Cel")]
        return out

    def advisories(engine):
        return [r for r in feed(engine, stream()) if r["resourceType"] == "DetectedIssue"
                and r["code"]["coding"][0]["code"] == "model-deterioration"]

    held = advisories(Engine(builtin_ruleset("icu-limits"), ModelHandle(model)))
    assert held and held[0]["status"] == "preliminary"
    assert not advisories(Engine(builtin_ruleset("icu-limits"), ModelHandle(model), risk_clear_threshold=0.8))


def test_warm_fills_windows_silently():
    from inference.vitals import sample_from_observation

    engine = Engine(builtin_ruleset("icu-limits"))
    samples = [s for t in range(0, 20) for s in sample_from_observation(obs(f"s{t}", t, MDC, "150456", 89))]
    engine.warm(samples)
    assert engine.alerts == {} and len(engine.windows) == 1


def test_engine_ignores_its_own_output():
    engine = Engine(builtin_ruleset("news2-ward"))
    produced = feed(engine, _ward_set(0) + [obs("rr-high", 120, LOINC, "9279-1", 25, "/min", "w1")])
    assert produced
    assert feed(engine, produced) == []  # survey-category score and DetectedIssues never re-trigger


def test_restart_continues_open_alert_instead_of_duplicating():
    from inference.fhir import alert_from_detected_issue

    engine = Engine(builtin_ruleset("icu-limits"))
    out = feed(engine, [obs(f"s{t}", t, MDC, "150456", 89) for t in range(0, 16)])
    [stored] = [r for r in out if r["resourceType"] == "DetectedIssue"]
    restarted = Engine(builtin_ruleset("icu-limits"))
    restarted.restore_alert(alert_from_detected_issue(stored))
    later = feed(restarted, [obs(f"s{t}", t, MDC, "150456", 84) for t in range(16, 20)])
    issues = [r for r in later if r["resourceType"] == "DetectedIssue"]
    assert issues and {r["id"] for r in issues} == {stored["id"]}
    assert issues[0]["severity"] == "high"  # escalated, same episode
