"""SubscriptionTopic resources compiled into triggers, and the topics Vitalgate ships.

A topic (https://hl7.org/fhir/R4B/subscriptiontopic.html) fires for a change when one of
its ``resourceTrigger``s accepts it: the interaction is supported, the query criteria on the
previous and current versions pass (``resultForCreate``/``resultForDelete`` stand in for the
missing side, ``requireBoth`` says whether both sides or either must pass), and, only when
a topic declares one, the ``fhirPathCriteria`` holds (evaluated with fhirpathpy, with
``%previous`` and ``%current``; about 100 µs, so never on the default path).

``canFilterBy`` lists the filters a Subscription may use: search parameters of the
registry, or a topic-local token parameter named by a ``filterDefinition`` we know
(``LOCAL_PARAMS``; R4B has no DetectedIssue severity search parameter).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from fhir_server.search import search_params
from fhir_server.search.registry import SearchParam

from .criteria import Criteria, CriteriaError, IndexedResource, compile_criteria

TOPIC_BASE = "http://vitalgate.org/fhir/SubscriptionTopic/"
SEVERITY_DEF = "http://vitalgate.org/fhir/SearchParameter/DetectedIssue-severity"
LOCAL_PARAMS: dict[str, SearchParam] = {
    SEVERITY_DEF: SearchParam("DetectedIssue", "severity", "token", ("severity",), (), "high | moderate | low"),
}
_INTERACTIONS = frozenset({"create", "update", "delete"})


class TopicError(ValueError):
    """A SubscriptionTopic this server cannot evaluate."""


@dataclass(frozen=True)
class Trigger:
    resource_type: str
    interactions: frozenset[str]
    current: Criteria | None = None
    previous: Criteria | None = None
    result_for_create: bool = True
    result_for_delete: bool = False
    require_both: bool = False
    fhirpath: str | None = None

    @property
    def needs_previous(self) -> bool:
        return self.previous is not None or self.fhirpath is not None

    def fires(self, op: str, cur: IndexedResource | None, prev: IndexedResource | None,
              cur_body: Mapping[str, Any] | None, prev_body: Mapping[str, Any] | None) -> bool:
        if op not in self.interactions:
            return False
        tests = []
        if self.previous is not None:
            tests.append(self.result_for_create if op == "create" or prev is None else self.previous.matches(prev))
        if self.current is not None:
            tests.append(self.result_for_delete if op == "delete" or cur is None else self.current.matches(cur))
        if tests and not (all(tests) if self.require_both else any(tests)):
            return False
        return self.fhirpath is None or _fhirpath(self.fhirpath, cur_body, prev_body)


def _fhirpath(expr: str, cur: Mapping[str, Any] | None, prev: Mapping[str, Any] | None) -> bool:
    from fhirpathpy import evaluate

    focus = cur if cur is not None else prev
    try:
        out = evaluate(dict(focus or {}), expr, {"current": dict(cur or {}), "previous": dict(prev or {})})
    except Exception:  # noqa: BLE001 - a user-defined expression that fails is a non-match
        return False
    return bool(out) and out != [False]


@dataclass(frozen=True)
class Topic:
    url: str
    status: str
    triggers: tuple[Trigger, ...]
    filters: Mapping[str, frozenset[str]] = field(default_factory=dict)  # "Type.param" -> modifiers
    local: Mapping[str, SearchParam] = field(default_factory=dict)  # "Type.param" -> topic-local param

    @property
    def resource_types(self) -> frozenset[str]:
        return frozenset(t.resource_type for t in self.triggers)

    @property
    def local_params(self) -> tuple[SearchParam, ...]:
        return tuple(self.local.values())

    def allows(self, type_: str, param: str, modifier: str | None) -> bool:
        mods = self.filters.get(f"{type_}.{param}")
        return mods is not None and (modifier is None or modifier in mods)

    def compile_filter(self, text: str) -> Criteria:
        crit = compile_criteria(text, self.allows, self.local)
        if crit.resource_type not in self.resource_types:
            raise CriteriaError(f"this topic has no trigger on {crit.resource_type}")
        return crit


def _type_of(resource: str) -> str:
    return resource.rstrip("/").rsplit("/", 1)[-1]


def _criteria(text: Any, type_: str, where: str) -> Criteria | None:
    if not text:
        return None
    if not isinstance(text, str):
        raise TopicError(f"{where} must be a string")
    if "?" not in text:
        text = f"{type_}?{text}"
    try:
        crit = compile_criteria(text)
    except CriteriaError as exc:
        raise TopicError(f"{where}: {exc}") from None
    if crit.resource_type != type_:
        raise TopicError(f"{where} is on {crit.resource_type}, the trigger on {type_}")
    return crit


def _trigger(t: Mapping[str, Any], i: int) -> Trigger:
    type_ = _type_of(str(t.get("resource") or ""))
    if not search_params(type_):
        raise TopicError(f"resourceTrigger[{i}].resource {t.get('resource')!r} is not a supported type")
    inter = frozenset(t.get("supportedInteraction") or _INTERACTIONS)
    if not inter <= _INTERACTIONS:
        raise TopicError(f"resourceTrigger[{i}].supportedInteraction has unknown codes")
    q = t.get("queryCriteria") or {}
    where = f"resourceTrigger[{i}].queryCriteria"
    return Trigger(
        type_, inter,
        current=_criteria(q.get("current"), type_, f"{where}.current"),
        previous=_criteria(q.get("previous"), type_, f"{where}.previous"),
        result_for_create=q.get("resultForCreate", "test-passes") == "test-passes",
        result_for_delete=q.get("resultForDelete", "test-fails") == "test-passes",
        require_both=bool(q.get("requireBoth", False)),
        fhirpath=t.get("fhirPathCriteria") or None,
    )


def compile_topic(res: Mapping[str, Any]) -> Topic:
    """Compile a SubscriptionTopic resource; raises TopicError when it cannot be evaluated."""
    url = res.get("url")
    if not isinstance(url, str) or not url:
        raise TopicError("a SubscriptionTopic needs a url")
    triggers = tuple(_trigger(t, i) for i, t in enumerate(res.get("resourceTrigger") or []))
    if not triggers:
        raise TopicError("a SubscriptionTopic needs at least one resourceTrigger")
    filters: dict[str, frozenset[str]] = {}
    local: dict[str, SearchParam] = {}
    for f in res.get("canFilterBy") or []:
        type_ = _type_of(str(f.get("resource") or "")) if f.get("resource") else triggers[0].resource_type
        name = f.get("filterParameter")
        key = f"{type_}.{name}"
        lp = LOCAL_PARAMS.get(f.get("filterDefinition") or "")
        if lp is not None and lp.key == key:
            local[key] = lp
        elif not isinstance(name, str) or name not in search_params(type_):
            raise TopicError(f"canFilterBy {key!r} is not a search parameter this server knows")
        mods = f.get("modifier") or []
        filters[key] = filters.get(key, frozenset()) | frozenset(mods)
    return Topic(url, str(res.get("status") or "active"), triggers, filters, local)


# ---- shipped topics -------------------------------------------------------------------------

def _filter(resource: str, name: str, doc: str, mods: tuple[str, ...] = (), definition: str | None = None
            ) -> dict[str, Any]:
    f: dict[str, Any] = {"resource": resource, "filterParameter": name, "description": doc}
    if mods:
        f["modifier"] = list(mods)
    if definition:
        f["filterDefinition"] = definition
    return f


def _topic(id_: str, title: str, description: str, triggers: list[dict[str, Any]],
           filters: list[dict[str, Any]]) -> dict[str, Any]:
    return {"resourceType": "SubscriptionTopic", "id": id_, "url": TOPIC_BASE + id_, "version": "1",
            "title": title, "status": "active", "description": description,
            "resourceTrigger": triggers, "canFilterBy": filters}


def _encounter_change(id_: str, title: str, desc: str, prev: str, cur: str) -> dict[str, Any]:
    trig = {"resource": "Encounter", "supportedInteraction": ["create", "update"],
            "queryCriteria": {"previous": prev, "current": cur, "resultForCreate": "test-passes",
                              "requireBoth": True}}
    return _topic(id_, title, desc, [trig], [
        _filter("Encounter", "patient", "The patient"), _filter("Encounter", "location", "A bed or ward")])


def shipped_topics() -> list[dict[str, Any]]:
    """The SubscriptionTopic resources every node stores at start-up."""
    obs = {"resource": "Observation", "supportedInteraction": ["create", "update"]}
    alert = {"resource": "DetectedIssue", "supportedInteraction": ["create", "update"]}
    transfer = {"resource": "Encounter", "supportedInteraction": ["update"],
                "queryCriteria": {"current": "Encounter?status=in-progress"},
                "fhirPathCriteria": "%current.location.location.reference != %previous.location.location.reference"}
    return [
        _topic("observation", "New or updated Observation", "An Observation is created or updated.",
               [obs], [_filter("Observation", "patient", "The patient"),
                       _filter("Observation", "code", "The code (e.g. LOINC or MDC)", ("not",)),
                       _filter("Observation", "category", "The category (e.g. vital-signs)", ("not",))]),
        _topic("detected-issue", "Alert raised or changed", "A DetectedIssue (alert) is created or updated.",
               [alert], [_filter("DetectedIssue", "patient", "The patient"),
                         _filter("DetectedIssue", "severity", "high | moderate | low", ("not",), SEVERITY_DEF)]),
        _encounter_change("encounter-admit", "Patient admitted", "An Encounter becomes in-progress.",
                          "Encounter?status:not=in-progress", "Encounter?status=in-progress"),
        _encounter_change("encounter-discharge", "Patient discharged", "An Encounter becomes finished.",
                          "Encounter?status:not=finished", "Encounter?status=finished"),
        _topic("encounter-transfer", "Patient transferred", "An in-progress Encounter changes location.",
               [transfer], [_filter("Encounter", "patient", "The patient"),
                            _filter("Encounter", "location", "A bed or ward")]),
    ]
