"""FHIR builders validate with fhir.resources R4B and carry the agreed shapes."""

from datetime import UTC, datetime, timedelta

import pytest
from fhir.resources.R4B.detectedissue import DetectedIssue
from fhir.resources.R4B.observation import Observation
from fhir.resources.R4B.riskassessment import RiskAssessment

from inference.alarms import AlarmPolicy, AlarmTracker, AlertKey, Evaluation, Level
from inference.alert import (
    acknowledge,
    advance,
    mark_false_alarm,
    open_alert,
    ruleset_device_id,
)
from inference.fhir import detected_issue, news2_observation, risk_assessment
from inference.news2 import News2Inputs, compute_news2
from inference.throttle import ChangeThrottle

T0 = datetime(2026, 11, 28, 11, 0, tzinfo=UTC)
KEY = AlertKey("p1", "limit-spo2-low")
POLICY = AlarmPolicy(persistence_s=0, clear_s=30)
AUTHOR = ruleset_device_id("icu-limits", "1.0.0")


def _lifecycle():
    tracker = AlarmTracker()
    [opened] = tracker.step(KEY, Evaluation(T0, Level.MODERATE, ("o1",), None, "mon-1"), POLICY)
    alert = open_alert(opened, AUTHOR)
    [esc] = tracker.step(KEY, Evaluation(T0 + timedelta(seconds=5), Level.HIGH, ("o2",)), POLICY)
    escalated = advance(alert, esc)
    acked = acknowledge(escalated, "Practitioner/nurse-7", T0 + timedelta(seconds=40))
    tracker.step(KEY, Evaluation(T0 + timedelta(seconds=60), Level.NONE, ("o3",)), POLICY)
    [res] = tracker.step(KEY, Evaluation(T0 + timedelta(seconds=90), Level.NONE, ("o4",)), POLICY)
    return alert, escalated, acked, advance(acked, res)


def test_open_alert_is_preliminary_and_validates():
    alert, *_ = _lifecycle()
    di = detected_issue(alert)
    DetectedIssue.model_validate(di)
    assert di["status"] == "preliminary" and di["severity"] == "moderate"
    assert di["id"] == alert.episode_id
    assert di["identifier"] == [{"system": "urn:vitalgate:alert", "value": alert.episode_id}]
    assert di["patient"] == {"reference": "Patient/p1"}
    assert di["identifiedPeriod"] == {"start": "2026-11-28T11:00:00+00:00"}
    assert di["evidence"] == [{"detail": [{"reference": "Observation/o1"}]}]
    assert di["implicated"] == [{"reference": "Device/mon-1"}]
    assert di["author"] == {"reference": "Device/rules-icu-limits-1.0.0"}
    assert di["code"]["coding"][0]["code"] == "limit-spo2-low"


def test_escalation_acknowledgement_and_resolution():
    _, escalated, acked, resolved = _lifecycle()
    assert detected_issue(escalated)["severity"] == "high"
    di_ack = detected_issue(acked)
    DetectedIssue.model_validate(di_ack)
    assert di_ack["status"] == "preliminary"
    [mitigation] = di_ack["mitigation"]
    assert mitigation["author"] == {"reference": "Practitioner/nurse-7"}
    assert mitigation["date"] == "2026-11-28T11:00:40+00:00"
    di_final = detected_issue(resolved)
    DetectedIssue.model_validate(di_final)
    assert di_final["status"] == "final"
    assert di_final["identifiedPeriod"]["end"] == "2026-11-28T11:01:30+00:00"
    assert di_final["id"] == detected_issue(acked)["id"]  # same resource, updated in place


def test_false_alarm_is_entered_in_error():
    alert, *_ = _lifecycle()
    wrong = detected_issue(mark_false_alarm(alert, "Practitioner/n", T0 + timedelta(seconds=9)))
    DetectedIssue.model_validate(wrong)
    assert wrong["status"] == "entered-in-error"
    assert wrong["identifiedPeriod"]["end"] == "2026-11-28T11:00:09+00:00"


def test_news2_observation_shape():
    result = compute_news2(News2Inputs(21, 96, False, 120, 70, "A", 37.0), ("a", "b"))
    obs = news2_observation(result, "p1", T0, "rules-news2-ward-1.0.0")
    Observation.model_validate(obs)
    assert obs["category"][0]["coding"][0]["code"] == "survey"
    assert obs["valueInteger"] == 2
    assert obs["interpretation"][0]["coding"][0]["code"] == "low"
    assert len(obs["component"]) == 7
    assert obs["component"][0] == {
        "code": {"coding": [{"system": "urn:vitalgate:news2-parameter", "code": "resp_rate"}],
                 "text": "resp_rate 21"},
        "valueInteger": 2,
    }
    assert obs["derivedFrom"] == [{"reference": "Observation/a"}, {"reference": "Observation/b"}]
    assert obs == news2_observation(result, "p1", T0, "rules-news2-ward-1.0.0")  # stable id


def test_incomplete_news2_is_not_written():
    with pytest.raises(ValueError, match="temperature"):
        news2_observation(compute_news2(News2Inputs(21, 96, False, 120, 70, "A")), "p1", T0, "d")


def test_risk_assessment_shape():
    ra = risk_assessment(patient_id="p1", at=T0, probability=0.8312, model_name="deterioration",
                         model_version="1.0.0", basis_ids=("o1",), performer_device_id="m-1")
    RiskAssessment.model_validate(ra)
    assert ra["prediction"][0]["probabilityDecimal"] == 0.8312
    assert ra["method"]["coding"][0] == {"system": "urn:vitalgate:model", "code": "deterioration",
                                         "version": "1.0.0"}
    assert ra["performer"] == {"reference": "Device/m-1"}
    with pytest.raises(ValueError):
        risk_assessment(patient_id="p1", at=T0, probability=1.5, model_name="m", model_version="1",
                        basis_ids=(), performer_device_id="m")


def test_throttle_writes_on_change_or_interval():
    throttle = ChangeThrottle(timedelta(minutes=5))
    assert throttle.due("p1", (3, "low"), T0)
    assert not throttle.due("p1", (3, "low"), T0 + timedelta(minutes=1))
    assert throttle.due("p1", (4, "low"), T0 + timedelta(minutes=2))
    assert not throttle.due("p1", (4, "low"), T0 + timedelta(minutes=6, seconds=59))
    assert throttle.due("p1", (4, "low"), T0 + timedelta(minutes=7))


def test_detected_issue_round_trip():
    from inference.fhir import alert_from_detected_issue

    *_, acked, resolved = _lifecycle()
    for state in (acked, resolved):
        back = alert_from_detected_issue(detected_issue(state))
        assert detected_issue(back) == detected_issue(state)
    with pytest.raises(ValueError):
        alert_from_detected_issue({"resourceType": "DetectedIssue"})
