"""Framework-free request and response values."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class FhirRequest:
    """One FHIR interaction. ``path`` is relative to the FHIR base, e.g. ``Observation/1``."""

    method: str
    path: str
    params: tuple[tuple[str, str], ...] = ()
    headers: dict[str, str] = field(default_factory=dict)  # lower-case names
    body: bytes | None = None
    resource: dict[str, Any] | None = None  # already parsed (bundle entries)

    def header(self, name: str) -> str | None:
        return self.headers.get(name)

    @property
    def parts(self) -> list[str]:
        return [p for p in self.path.strip("/").split("/") if p]

    def prefer(self, key: str) -> str | None:
        """Value of one ``Prefer`` token, e.g. ``return`` or ``handling``."""
        for token in (self.headers.get("prefer") or "").split(";"):
            for item in token.split(","):
                k, _, v = item.strip().partition("=")
                if k.strip() == key:
                    return v.strip().strip('"')
        return None


@dataclass
class FhirResponse:
    status: int
    body: bytes | dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "application/fhir+json"
