"""FHIR-native errors: every failure in ``fhir_server`` is a ``FhirError`` carrying an OperationOutcome.

Hierarchy::

    FhirError(outcome, status)           rendered by one exception handler as application/fhir+json
     ├── bad_request()        400 invalid / structure / value
     ├── not_found()          404 not-found
     ├── gone()               410 deleted
     ├── not_supported()      405 not-supported
     ├── conflict()           409 conflict
     ├── precondition_failed()412 conflict / multiple-matches
     └── unprocessable()      422 business-rule / processing

    StorageError                         a database failure, translated inside the store
     └── VersionConflict                 optimistic-lock failure (If-Match, concurrent update)

See https://hl7.org/fhir/R4B/operationoutcome.html and http.html for the status mapping.
"""

from __future__ import annotations

from typing import Any

Outcome = dict[str, Any]


def outcome(severity: str, code: str, diagnostics: str, expression: list[str] | None = None) -> Outcome:
    issue: dict[str, Any] = {"severity": severity, "code": code, "diagnostics": diagnostics}
    if expression:
        issue["expression"] = expression
    return {"resourceType": "OperationOutcome", "issue": [issue]}


class FhirError(Exception):
    """An error that the REST layer renders as an OperationOutcome with ``status``."""

    def __init__(self, status: int, code: str, diagnostics: str, expression: list[str] | None = None):
        super().__init__(diagnostics)
        self.status = status
        self.code = code
        self.outcome: Outcome = outcome("error", code, diagnostics, expression)


def bad_request(msg: str, expression: list[str] | None = None, code: str = "invalid") -> FhirError:
    return FhirError(400, code, msg, expression)


def not_found(msg: str) -> FhirError:
    return FhirError(404, "not-found", msg)


def gone(msg: str) -> FhirError:
    return FhirError(410, "deleted", msg)


def not_supported(msg: str) -> FhirError:
    return FhirError(405, "not-supported", msg)


def conflict(msg: str) -> FhirError:
    return FhirError(409, "conflict", msg)


def precondition_failed(msg: str, code: str = "conflict") -> FhirError:
    return FhirError(412, code, msg)


def unprocessable(msg: str, expression: list[str] | None = None) -> FhirError:
    return FhirError(422, "processing", msg, expression)


class StorageError(Exception):
    """A database failure, translated from SQLAlchemy/driver errors inside the store."""


class PreconditionFailed(StorageError):
    """A transaction's ``WriteTx.expect_empty`` query found a row: nothing of it was committed."""


class VersionConflict(StorageError):
    """The resource's current version is not the one the writer expected."""

    def __init__(self, type_: str, id_: str, expected: int | None, actual: int | None):
        super().__init__(f"{type_}/{id_}: expected version {expected}, found {actual}")
        self.expected = expected
        self.actual = actual
        self._key = (type_, id_)

    def __reduce__(self) -> tuple[type[VersionConflict], tuple[str, str, int | None, int | None]]:
        # raised in the SQLite writer process and re-raised here (storage/writer_process.py)
        return (VersionConflict, (*self._key, self.expected, self.actual))
