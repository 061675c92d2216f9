"""``MappingContext`` (site settings and code maps a mapping needs) and ``MappingResult``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

SUPPORTED_VERSIONS = frozenset(
    {"2.2", "2.3", "2.3.1", "2.4", "2.5", "2.5.1", "2.6", "2.7", "2.7.1", "2.8", "2.8.1",
     "2.8.2", "2.9"}
)


def _empty() -> Mapping[Any, Any]:
    return MappingProxyType({})


@dataclass(frozen=True)
class MappingContext:
    """Everything a mapping reads besides the message; built once per site/profile set.

    - ``identifier_systems``: assigning authority (CX.4.1 or CX.4.2) -> identifier system URI;
      unknown authorities get ``urn:vitalgate:id:<authority>`` (``local`` when none is sent).
    - ``code_aliases``: (coding system, code) -> MDC numeric code, e.g.
      ``("MDIL", "0002-4182") -> "147842"``; built by vendor profiles.
    - ``unit_aliases``: (coding system, code) -> UCUM, consulted before the built-in tables.
    - ``status_maps``: sending application (MSH-3.1) -> {OBX-11 code -> Observation.status},
      overriding the HL7 v2-to-FHIR table for sources that use a code differently (IHE PCD
      Philips sends ``X`` beside valid values).
    - ``alarm_limit_sources``: sending applications whose OBX-7 carries alarm limits (not
      reference ranges); MDIL-coded rows are always treated so.
    """

    site_tz: ZoneInfo = field(default_factory=lambda: ZoneInfo("UTC"))
    identifier_systems: Mapping[str, str] = field(default_factory=_empty)
    code_aliases: Mapping[tuple[str, str], str] = field(default_factory=_empty)
    unit_aliases: Mapping[tuple[str, str], str] = field(default_factory=_empty)
    status_maps: Mapping[str, Mapping[str, str]] = field(default_factory=_empty)
    alarm_limit_sources: frozenset[str] = frozenset()
    accepted_processing_ids: frozenset[str] = frozenset({"P"})
    supported_versions: frozenset[str] = SUPPORTED_VERSIONS
    # Memo of code/unit resolutions, which depend only on the raw CWE text and this context.
    memo: dict[Any, Any] = field(default_factory=dict, init=False, repr=False, compare=False)

    def identifier_system(self, authority: str) -> str:
        """Identifier system URI for an assigning authority."""
        found = self.identifier_systems.get(authority)
        if found:
            return found
        return "urn:vitalgate:id:" + quote(authority or "local", safe="")


@dataclass(frozen=True, slots=True)
class MappingResult:
    """FHIR resource dicts (each with ``resourceType`` and a deterministic ``id``) and the
    patients they concern as ``system|value`` keys (for inbox search).

    ``reference_only`` lists ``"Type/id"`` of resources the store should create only when
    absent and never overwrite: an ORU's PID/PV1 are sparse copies of what ADT owns, and
    writing them over the ADT version would erase demographics or re-open a discharged
    encounter.
    """

    resources: list[dict[str, Any]]
    patient_keys: list[str]
    reference_only: frozenset[str] = frozenset()
