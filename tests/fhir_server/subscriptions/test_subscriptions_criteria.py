"""Criteria evaluated in memory agree with search semantics; topics compile or say why not."""

from __future__ import annotations

import pytest

from fhir_server.subscriptions.criteria import CriteriaError, IndexedResource, compile_criteria
from fhir_server.subscriptions.topics import TOPIC_BASE, TopicError, compile_topic, shipped_topics

from .helpers import observation

OBS = IndexedResource.of("Observation", observation("p1", value=130) | {"id": "o1"})


@pytest.mark.parametrize(("criteria", "expected"), [
    ("Observation?patient=Patient/p1", True),
    ("Observation?patient=p1", True),
    ("Observation?patient=Patient/p2", False),
    ("Observation?subject:Patient=p1", True),
    ("Observation?code=http://loinc.org|8867-4", True),
    ("Observation?code=http://snomed.info/sct|8867-4", False),
    ("Observation?code=|8867-4", False),
    ("Observation?code=59408-5,8867-4", True),
    ("Observation?code:not=8867-4", False),
    ("Observation?category=vital-signs&status=final", True),
    ("Observation?category=vital-signs&status=amended", False),
    ("Observation?value-quantity=gt120", True),
    ("Observation?value-quantity=le120", False),
    ("Observation?value-quantity=130|http://unitsofmeasure.org|/min", True),
    ("Observation?date=2026-11-28", True),
    ("Observation?date=lt2026-11-28", False),
    ("Observation?date=ge2026-11-28T09:00:00Z", True),
    ("Observation?encounter:missing=true", True),
    ("Observation?_id=o1", True),
    ("Observation?_id=o2", False),
])
def test_criteria_match_like_search(criteria, expected):
    assert compile_criteria(criteria).matches(OBS) is expected


@pytest.mark.parametrize("criteria", ["observation?code=x", "Observation?nope=1", "Observation?code=",
                                      "Observation?patient.name=x", "Observation?date=notadate",
                                      "Observation?code:above=x"])
def test_bad_criteria_are_refused(criteria):
    with pytest.raises(CriteriaError):
        compile_criteria(criteria)


def test_topic_local_severity_filter():
    topic = next(compile_topic(t) for t in shipped_topics() if t["url"] == TOPIC_BASE + "detected-issue")
    crit = topic.compile_filter("DetectedIssue?severity=high")
    issue = {"resourceType": "DetectedIssue", "id": "d", "severity": "high", "status": "preliminary"}
    assert crit.matches(IndexedResource.of("DetectedIssue", issue, topic.local_params))
    assert not crit.matches(IndexedResource.of("DetectedIssue", issue | {"severity": "low"}, topic.local_params))
    with pytest.raises(CriteriaError):
        topic.compile_filter("Observation?patient=p1")


@pytest.mark.parametrize(("change", "why"), [
    ({"url": None}, "needs a url"),
    ({"resourceTrigger": []}, "at least one resourceTrigger"),
    ({"resourceTrigger": [{"resource": "Nope"}]}, "not a supported type"),
    ({"resourceTrigger": [{"resource": "Observation", "queryCriteria": {"current": "Patient?name=x"}}]},
     "trigger on Observation"),
    ({"canFilterBy": [{"resource": "Observation", "filterParameter": "severity"}]}, "not a search parameter"),
])
def test_topics_that_cannot_be_evaluated_say_why(change, why):
    base = {"resourceType": "SubscriptionTopic", "url": "http://x/t", "status": "active",
            "resourceTrigger": [{"resource": "Observation"}]}
    with pytest.raises(TopicError, match=why):
        compile_topic(base | change)


def test_package_exports_exist():
    import fhir_server.subscriptions as subs

    for name in subs.__all__:
        assert hasattr(subs, name), name
    assert "subscription_service" in subs.__all__ and "InternalSubscriber" in subs.__all__


def test_byte_prefilter_needles_come_only_from_positive_equality_filters():
    topic = next(compile_topic(t) for t in shipped_topics() if t["url"] == TOPIC_BASE + "observation")
    assert topic.compile_filter("Observation?patient=Patient/p1,p2").needles() == {b"p1", b"p2"}
    assert topic.compile_filter("Observation?code=http://loinc.org|8867-4").needles() == {b"8867-4"}
    assert topic.compile_filter("Observation?code:not=8867-4").needles() is None
    assert topic.compile_filter("Observation?patient=http://other.example/fhir/Patient/p1").needles() is None
