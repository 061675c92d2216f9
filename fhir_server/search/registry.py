"""The search-parameter registry: the single source of truth for what can be searched.

The index extractor (``extract.py``), the query parser (``query.py``) and the
CapabilityStatement are all generated from ``REGISTRY``. Paths are simple dotted element
paths relative to the resource (``name.family``); a choice element is written ``effective[x]``
and is expanded, per parameter type, to the concrete element names
(``effectiveDateTime``, ``effectivePeriod``, ...). Spec: https://hl7.org/fhir/R4B/searchparameter-registry.html

``_id`` and ``_lastUpdated`` exist for every type; they are answered from the ``resource`` table
columns (``id``, ``last_updated``), not from index rows, so they have no paths.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from types import MappingProxyType

__all__ = [
    "PARAM_TYPES",
    "SearchParam",
    "capability_search_params",
    "include_names",
    "revinclude_names",
    "search_params",
    "searchable_types",
    "table_kind",
]

PARAM_TYPES = frozenset({"token", "string", "date", "reference", "quantity", "number", "uri"})

# uri values are matched exactly (case-sensitive), like a token without a system.
_TABLE_OF_TYPE = {"uri": "token"}


@dataclass(frozen=True, slots=True)
class SearchParam:
    """One search parameter of one resource type."""

    resource_type: str
    name: str
    type: str
    paths: tuple[str, ...] = ()
    target_types: tuple[str, ...] = ()
    description: str = ""
    rows_of: str = ""  # a broader parameter whose rows hold this one's (see ``shared_rows``)

    @property
    def key(self) -> str:
        """The parameter's own name in the index: ``"<ResourceType>.<name>"``."""
        return f"{self.resource_type}.{self.name}"

    @property
    def rows_key(self) -> str:
        """The ``param`` column value of the index rows this parameter is answered from."""
        return f"{self.resource_type}.{self.rows_of}" if self.rows_of else self.key

    @property
    def table(self) -> str:
        """The index table kind (``token``, ``string``, ...) holding this parameter's rows."""
        return table_kind(self.type)


def table_kind(param_type: str) -> str:
    return _TABLE_OF_TYPE.get(param_type, param_type)


# (name, type, paths, target types, description); "|" separates alternative paths.
_Spec = tuple[str, str, str, str, str]

_SUBJECT = "Patient|Group|Device|Location"
_AUTHOR = "Practitioner|PractitionerRole|Device|Organization|Patient"

_SPECS: dict[str, list[_Spec]] = {
    "Patient": [
        ("identifier", "token", "identifier", "", "A patient identifier"),
        ("name", "string", "name", "", "Any part of a name: family, given, prefix, suffix, text"),
        ("family", "string", "name.family", "", "The family name"),
        ("given", "string", "name.given", "", "A given name"),
        ("birthdate", "date", "birthDate", "", "The date of birth"),
        ("gender", "token", "gender", "", "Administrative gender"),
        ("active", "token", "active", "", "Whether the record is active"),
        ("telecom", "token", "telecom", "", "The value of a contact point (system|value)"),
    ],
    "Observation": [
        ("patient", "reference", "subject", "Patient", "The patient the observation is about"),
        ("subject", "reference", "subject", _SUBJECT, "The subject of the observation"),
        ("code", "token", "code", "", "The code of the observation"),
        ("category", "token", "category", "", "The classification of the observation"),
        ("date", "date", "effective[x]", "", "The clinically relevant time"),
        ("value-quantity", "quantity", "value[x]", "", "The value, if a Quantity"),
        ("component-code", "token", "component.code", "", "The code of a component"),
        ("component-value-quantity", "quantity", "component.value[x]", "",
         "The value of a component, if a Quantity"),
        ("device", "reference", "device", "Device|DeviceMetric", "The device that measured it"),
        ("status", "token", "status", "", "The status of the observation"),
        ("encounter", "reference", "encounter", "Encounter", "The encounter"),
        ("identifier", "token", "identifier", "", "A business identifier"),
    ],
    "Device": [
        ("identifier", "token", "identifier", "", "A device identifier (e.g. EUI-64)"),
        ("manufacturer", "string", "manufacturer", "", "The manufacturer"),
        ("model", "string", "modelNumber", "", "The model number"),
        ("device-name", "string", "deviceName.name", "", "A name of the device"),
        ("type", "token", "type", "", "The kind of device"),
        ("patient", "reference", "patient", "Patient", "The patient the device is attached to"),
        ("status", "token", "status", "", "active | inactive | entered-in-error | unknown"),
        ("location", "reference", "location", "Location", "Where the device is"),
    ],
    "DeviceUseStatement": [  # the device-patient association (gateway/devices/associations.py)
        ("patient", "reference", "subject", "Patient", "The patient using the device"),
        ("subject", "reference", "subject", "Patient|Group", "The patient or group using the device"),
        ("device", "reference", "device", "Device", "The device"),
        ("identifier", "token", "identifier", "", "A business identifier"),
    ],
    "Encounter": [
        ("patient", "reference", "subject", "Patient", "The patient"),
        ("subject", "reference", "subject", "Patient|Group", "The patient or group"),
        ("status", "token", "status", "", "The status of the encounter"),
        ("class", "token", "class", "", "The class of the encounter (e.g. IMP, ICU)"),
        ("type", "token", "type", "", "The type of the encounter"),
        ("identifier", "token", "identifier", "", "A business identifier"),
        ("date", "date", "period", "", "A date within the period of the encounter"),
        ("location", "reference", "location.location", "Location", "A location (bed, room)"),
    ],
    "Location": [
        ("identifier", "token", "identifier", "", "A location identifier"),
        ("name", "string", "name|alias", "", "The name or an alias of the location"),
        ("status", "token", "status", "", "active | suspended | inactive"),
        ("type", "token", "type", "", "The kind of location"),
        ("partof", "reference", "partOf", "Location", "The location this one is part of"),
    ],
    "DetectedIssue": [
        ("patient", "reference", "patient", "Patient", "The patient the alert is about"),
        ("code", "token", "code", "", "The kind of issue (alert condition)"),
        ("identified", "date", "identified[x]", "", "When the issue was identified (alarm episode)"),
        ("author", "reference", "author", "Practitioner|PractitionerRole|Device",
         "The rule set, model or person that raised it"),
        ("implicated", "reference", "implicated", "", "Resources implicated (e.g. the Device)"),
        ("identifier", "token", "identifier", "", "A business identifier"),
        ("status", "token", "status", "",
         "The status (preliminary = open alert); not a base R4B parameter"),
    ],
    "RiskAssessment": [
        ("patient", "reference", "subject", "Patient", "The patient"),
        ("subject", "reference", "subject", "Patient|Group", "The patient or group"),
        ("date", "date", "occurrence[x]", "", "When the assessment was made"),
        ("method", "token", "method", "", "The evaluation mechanism (model)"),
        ("performer", "reference", "performer", "Practitioner|PractitionerRole|Device",
         "Who or what did the assessment"),
        ("probability", "number", "prediction.probability[x]", "", "The likelihood of the outcome"),
        ("risk", "token", "prediction.qualitativeRisk", "", "The qualitative likelihood"),
        ("encounter", "reference", "encounter", "Encounter", "The encounter"),
        ("identifier", "token", "identifier", "", "A business identifier"),
    ],
    "Subscription": [
        ("status", "token", "status", "", "requested | active | error | off"),
        ("criteria", "string", "criteria", "", "The criteria (the topic canonical, in R4B backport)"),
        ("url", "uri", "channel.endpoint", "", "The channel endpoint"),
        ("type", "token", "channel.type", "", "rest-hook | websocket | email | sms | message"),
        ("payload", "token", "channel.payload", "", "The MIME type of the payload"),
    ],
    "SubscriptionTopic": [
        ("url", "uri", "url", "", "The canonical URL of the topic"),
        ("status", "token", "status", "", "draft | active | retired | unknown"),
        ("title", "string", "title", "", "The title of the topic"),
        ("resource", "uri", "resourceTrigger.resource", "", "A resource type the topic triggers on"),
    ],
    "AuditEvent": [
        ("date", "date", "recorded", "", "When the event was recorded"),
        ("agent", "reference", "agent.who", "", "Who took part"),
        ("entity", "reference", "entity.what", "", "A specific instance of a resource"),
        ("type", "token", "type", "", "The type of event"),
        ("subtype", "token", "subtype", "", "A more specific type"),
        ("action", "token", "action", "", "C | R | U | D | E"),
        ("outcome", "token", "outcome", "", "0 | 4 | 8 | 12"),
    ],
    "MedicationAdministration": [
        ("patient", "reference", "subject", "Patient", "The patient"),
        ("subject", "reference", "subject", "Patient|Group", "The patient or group"),
        ("status", "token", "status", "", "The status of the administration"),
        ("effective-time", "date", "effective[x]", "", "When the administration happened"),
        ("device", "reference", "device", "Device", "The device (infusion pump) used"),
        ("code", "token", "medication[x]", "", "The medication code"),
        ("medication", "reference", "medication[x]", "Medication", "The medication resource"),
        ("context", "reference", "context", "Encounter|EpisodeOfCare", "The encounter"),
        ("identifier", "token", "identifier", "", "A business identifier"),
    ],
}

_COMMON = (
    ("_id", "token", "The logical id of the resource"),
    ("_lastUpdated", "date", "When the resource version last changed"),
)
# Indexed like any other parameter, for every type.
_COMMON_INDEXED: tuple[_Spec, ...] = (
    ("_tag", "token", "meta.tag", "", "A tag on the resource"),
    ("_profile", "uri", "meta.profile", "", "A profile the resource claims to conform to"),
    ("_security", "token", "meta.security", "", "A security label on the resource"),
)


def _build() -> dict[str, Mapping[str, SearchParam]]:
    out: dict[str, Mapping[str, SearchParam]] = {}
    for rtype, specs in _SPECS.items():
        params: dict[str, SearchParam] = {
            name: SearchParam(rtype, name, ptype, (), (), desc) for name, ptype, desc in _COMMON
        }
        for name, ptype, paths, targets, desc in (*_COMMON_INDEXED, *specs):
            assert ptype in PARAM_TYPES, (rtype, name)
            params[name] = SearchParam(
                rtype, name, ptype, tuple(paths.split("|")),
                tuple(targets.split("|")) if targets else (), desc,
            )
        out[rtype] = MappingProxyType(_share_rows(params))
    return out


def _share_rows(params: dict[str, SearchParam]) -> dict[str, SearchParam]:
    """Point a reference parameter at a broader one on the same paths (``patient`` at
    ``subject``): its rows are a subset of that one's, so they are not stored twice."""
    refs = [p for p in params.values() if p.type == "reference" and p.target_types]
    for p in refs:
        broader = next((b for b in refs if b is not p and b.paths == p.paths
                        and set(p.target_types) < set(b.target_types)), None)
        if broader is not None:
            params[p.name] = replace(p, rows_of=broader.name)
    return params


REGISTRY: Mapping[str, Mapping[str, SearchParam]] = MappingProxyType(_build())


def search_params(resource_type: str) -> Mapping[str, SearchParam]:
    """The parameters of ``resource_type`` by name (empty if the type is not searchable)."""
    return REGISTRY.get(resource_type, MappingProxyType({}))


def searchable_types() -> list[str]:
    """The resource types that have search parameters, sorted."""
    return sorted(REGISTRY)


def capability_search_params(resource_type: str) -> list[dict[str, str]]:
    """``CapabilityStatement.rest.resource.searchParam`` entries for ``resource_type``."""
    return [
        {"name": p.name, "type": p.type, "documentation": p.description}
        for p in search_params(resource_type).values()
    ]


def include_names(resource_type: str) -> list[str]:
    """``searchInclude`` values: ``Type:param`` per reference parameter, plus ``Type:*``."""
    refs = [p for p in search_params(resource_type).values() if p.type == "reference"]
    return [f"{resource_type}:{p.name}" for p in refs] + ([f"{resource_type}:*"] if refs else [])


def revinclude_names(resource_type: str) -> list[str]:
    """``searchRevInclude`` values: every ``Source:param`` that can point at ``resource_type``."""
    return [
        f"{p.resource_type}:{p.name}"
        for params in REGISTRY.values()
        for p in params.values()
        if p.type == "reference" and (not p.target_types or resource_type in p.target_types)
    ]
