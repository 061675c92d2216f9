"""Rule sets as versioned data: TOML files loaded and validated with pydantic.

A rule set is chosen per care unit (``news2-ward`` for general wards and step-down units,
``icu-limits`` for ICUs where ventilated, sedated patients routinely score NEWS2 >= 5).  Shipped
rule sets live in ``inference/rulesets/*.toml``; sites may load their own with ``load_ruleset``.
Any problem raises ``RulesetError`` naming the file and the field (``limit[2].clear``).

Hysteresis of a limit: ``direction = "low"`` fires when the value is below ``set`` and holds
until it is at or above ``clear`` (so ``clear >= set``); ``"high"`` mirrors it (``clear <= set``).

A deviation (``[[deviation]]``) is a per-patient auto-limit: it compares the latest value with the
patient's own baseline (the median of the values over ``baseline_s`` ending ``lag_s`` earlier)
and fires when the value has moved ``set`` (percent of the baseline, or units) in ``direction``;
it holds until the change is back within ``clear`` (so ``0 <= clear <= set``).  A concordant rule
(``[[concordant]]``) fires when several such changes happen together.
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
    "ChangeSpec",
    "ConcordantRule",
    "DeviationRule",
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


class ChangeSpec(_Strict):
    """A change of one parameter from the patient's own baseline.

    Baseline = median of the parameter's values in ``[t - lag_s - baseline_s, t - lag_s]``, needing
    ``min_baseline_samples`` values that cover at least half of ``baseline_s``; the change is
    measured in ``unit`` (``percent`` of the baseline, or ``absolute`` units) in ``direction``.
    Over ``lag_s`` plus ``baseline_s`` the baseline follows the patient: a new steady state stops
    being a change (absolute limits and NEWS2 cover steady states), so this catches the early part.
    """

    param: Param
    direction: Literal["low", "high"]
    set: float = Field(gt=0)
    clear: float = Field(ge=0)
    unit: Literal["percent", "absolute"] = "percent"
    baseline_s: float = Field(600.0, gt=0)
    lag_s: float = Field(300.0, ge=0)
    min_baseline_samples: int = Field(5, ge=1)
    max_age_s: float = Field(60.0, gt=0)

    @model_validator(mode="after")
    def _hysteresis(self) -> ChangeSpec:
        if self.clear > self.set:
            raise ValueError("clear must be <= set (the change that holds an open alert is smaller)")
        return self

    def change(self, value: float, baseline: float) -> float:
        """How far ``value`` has moved from ``baseline`` in this rule's direction and unit."""
        delta = (baseline - value) if self.direction == "low" else (value - baseline)
        if self.unit == "absolute":
            return delta
        return 100.0 * delta / abs(baseline) if baseline else 0.0


class DeviationRule(ChangeSpec):
    """One parameter's change from baseline as its own condition (``trend-<param>-<direction>``):
    a per-patient monitor "auto-limit"."""

    severity: Severity
    persistence_s: float | None = Field(None, ge=0)
    clear_s: float | None = Field(None, ge=0)

    @property
    def condition(self) -> str:
        return f"trend-{self.param.value}-{self.direction}"


class ConcordantRule(_Strict):
    """Several parameters changing together from baseline (``condition``, e.g. ``trend-multi``):
    fires when at least ``min_changes`` of ``change`` are past their ``set``, holds while at least
    ``min_changes`` are past their ``clear`` (with ``score = "sum"``, fractions of the thresholds
    add up instead; see ``score``).  Smaller changes than a single-parameter deviation
    need, because concordant changes (heart rate up while pressure falls; breathing faster while
    saturation falls) are what deterioration looks like and what noise rarely does."""

    condition: str = Field(pattern=r"^trend-[a-z0-9-]+$")
    min_changes: int = Field(2, ge=2)
    # "count": a change counts once it is past its threshold.  "sum": each change counts as the
    # fraction of its threshold it has reached (0 to 1), so three parameters two thirds of the way
    # add up to two full changes: the evidence of all of them, the way an aggregate score (NEWS2)
    # adds sub-scores, instead of waiting for two to pass their thresholds alone.
    score: Literal["count", "sum"] = "count"
    severity: Severity
    persistence_s: float | None = Field(None, ge=0)
    clear_s: float | None = Field(None, ge=0)
    change: tuple[ChangeSpec, ...] = Field(min_length=2)

    @model_validator(mode="after")
    def _enough(self) -> ConcordantRule:
        if self.min_changes > len(self.change):
            raise ValueError(f"min_changes {self.min_changes} > {len(self.change)} changes listed")
        return self

    @property
    def params(self) -> frozenset[Param]:
        return frozenset(c.param for c in self.change)


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
    deviation: tuple[DeviationRule, ...] = ()
    concordant: tuple[ConcordantRule, ...] = ()
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
