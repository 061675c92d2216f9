"""Rule sets as versioned data: TOML files loaded and validated with pydantic.

A rule set is chosen per care unit (``news2-ward`` for general wards and step-down units,
``icu-limits`` for ICUs where ventilated, sedated patients routinely score NEWS2 >= 5).  Shipped
rule sets live in ``inference/rulesets/*.toml``; sites may load their own with ``load_ruleset``.
Any problem raises ``RulesetError`` naming the file and the field (``limit[2].clear``).

Hysteresis of a limit: ``direction = "low"`` fires when the value is below ``set`` and holds
until it is at or above ``clear`` (so ``clear >= set``); ``"high"`` mirrors it (``clear <= set``).
"""

from __future__ import annotations

import re
import tomllib
from importlib import resources
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from inference.errors import RulesetError
from inference.vitals import Param

__all__ = [
    "LimitRule",
    "News2Settings",
    "PatientOverride",
    "PolicyDefaults",
    "RuleSet",
    "TechnicalSettings",
    "builtin_ruleset",
    "builtin_ruleset_names",
    "load_ruleset",
    "parse_ruleset",
]

Severity = Literal["low", "moderate", "high"]
Band = Literal["low", "low-medium", "medium", "high"]
_SEMVER = re.compile(r"^\d+\.\d+\.\d+$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PolicyDefaults(_Strict):
    """Alarm timing in seconds (see ``inference.alarms.AlarmPolicy``)."""

    persistence_s: float = Field(0.0, ge=0)
    clear_s: float = Field(60.0, ge=0)
    deescalate_s: float = Field(60.0, ge=0)
    update_interval_s: float = Field(60.0, ge=0)
    max_gap_s: float = Field(60.0, gt=0)


class LimitRule(_Strict):
    """One threshold on one parameter; several rules on one (param, direction) are levels."""

    param: Param
    direction: Literal["low", "high"]
    set: float
    clear: float
    severity: Severity
    persistence_s: float | None = Field(None, ge=0)
    clear_s: float | None = Field(None, ge=0)
    max_age_s: float = Field(60.0, gt=0)

    @model_validator(mode="after")
    def _hysteresis_direction(self) -> LimitRule:
        if self.direction == "low" and self.clear < self.set:
            raise ValueError("for a low limit, clear must be >= set")
        if self.direction == "high" and self.clear > self.set:
            raise ValueError("for a high limit, clear must be <= set")
        return self

    @property
    def condition(self) -> str:
        return f"limit-{self.param.value}-{self.direction}"


class News2Settings(_Strict):
    min_alert_band: Band = "low-medium"
    assume_air_when_unknown: bool = False
    max_age_s: dict[str, float] = Field(default_factory=dict)


class TechnicalSettings(_Strict):
    stale_after_s: float = Field(30.0, gt=0)
    max_clock_drift_s: float = Field(5.0, gt=0)
    severity: Severity = "moderate"


class PatientOverride(_Strict):
    """Per-patient settings: SpO2 scale 2 (prescribed, never inferred) and replacement limits."""

    spo2_scale: Literal[1, 2] = 1
    limit: tuple[LimitRule, ...] = ()


class RuleSet(_Strict):
    schema_version: Literal[1] = Field(alias="schema")
    name: str = Field(min_length=1)
    version: str
    kind: Literal["news2", "limits"]
    description: str = ""
    defaults: PolicyDefaults = PolicyDefaults.model_validate({})  # frozen: safe to share
    news2: News2Settings | None = None
    limit: tuple[LimitRule, ...] = ()
    technical: TechnicalSettings = TechnicalSettings.model_validate({})
    patients: dict[str, PatientOverride] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _consistent(self) -> RuleSet:
        if not _SEMVER.match(self.version):
            raise ValueError(f"version {self.version!r} is not MAJOR.MINOR.PATCH")
        if self.kind == "news2" and self.news2 is None:
            raise ValueError("kind 'news2' needs a [news2] table")
        if self.kind == "limits" and not self.limit:
            raise ValueError("kind 'limits' needs at least one [[limit]]")
        return self

    def limits_for(self, patient_id: str) -> tuple[LimitRule, ...]:
        """Unit limits with the patient's overrides replacing same (param, direction, severity)."""
        override = self.patients.get(patient_id)
        if override is None or not override.limit:
            return self.limit
        replaced = {(r.param, r.direction, r.severity): r for r in override.limit}
        kept = [r for r in self.limit if (r.param, r.direction, r.severity) not in replaced]
        return (*kept, *override.limit)

    def spo2_scale_for(self, patient_id: str) -> int:
        override = self.patients.get(patient_id)
        return 1 if override is None else override.spo2_scale


def parse_ruleset(text: str, source: str = "<string>") -> RuleSet:
    """Parse and validate TOML text; ``source`` names the file in error messages."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RulesetError(f"{source}: not valid TOML: {exc}") from exc
    try:
        return RuleSet.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = _location(first["loc"]) or "(top level)"
        raise RulesetError(f"{source}: {where}: {first['msg']}") from exc


def load_ruleset(path: str | Path) -> RuleSet:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise RulesetError(f"{path}: cannot read: {exc.strerror}") from exc
    return parse_ruleset(text, str(path))


def builtin_ruleset_names() -> list[str]:
    folder = resources.files("inference") / "rulesets"
    return sorted(p.name.removesuffix(".toml") for p in folder.iterdir() if p.name.endswith(".toml"))


def builtin_ruleset(name: str) -> RuleSet:
    """One of the rule sets shipped in ``inference/rulesets``, by file stem."""
    resource = resources.files("inference") / "rulesets" / f"{name}.toml"
    if not resource.is_file():
        raise RulesetError(f"{name}.toml: no such built-in rule set")
    return parse_ruleset(resource.read_text(encoding="utf-8"), f"inference/rulesets/{name}.toml")


def _location(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out
