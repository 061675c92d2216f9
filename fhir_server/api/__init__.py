"""HTTP adapter of the FHIR server (FastAPI): routes translate HTTP to ``fhir_server.core`` calls."""

from .app import create_app, render

__all__ = ["create_app", "render"]
