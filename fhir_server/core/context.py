"""What a handler needs besides the request: the store and the public base URL."""

from __future__ import annotations

from dataclasses import dataclass

from fhir_server.storage import Store


@dataclass
class ServerContext:
    store: Store
    base_url: str  # absolute FHIR base, e.g. http://127.0.0.1:8080/fhir
    max_bundle_entries: int = 10_000
    max_page: int = 1000
