"""What a handler needs besides the request: the store and the public base URL."""

from __future__ import annotations

from dataclasses import dataclass, field

from fhir_server.storage import Store

from .extensions import Extensions


@dataclass
class ServerContext:
    store: Store
    base_url: str  # absolute FHIR base, e.g. http://127.0.0.1:8080/fhir
    max_bundle_entries: int = 10_000
    max_page: int = 1000
    extensions: Extensions = field(default_factory=Extensions)
