"""FHIR semantics, free of the web framework: ``handle(FhirRequest, ctx) -> FhirResponse``.

FastAPI routes (``fhir_server.api``) only adapt HTTP to these calls; batch and transaction
entries re-enter the same handler table.
"""

from .context import ServerContext
from .extensions import Extensions, Operation, OperationCall
from .request import FhirRequest, FhirResponse
from .router import handle

__all__ = ["Extensions", "FhirRequest", "FhirResponse", "Operation", "OperationCall", "ServerContext", "handle"]
