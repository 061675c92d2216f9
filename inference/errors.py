"""Errors raised by ``inference``: one base class, one subclass per failure a caller handles.

Hierarchy::

    InferenceError                 base of everything raised here
     ├── RulesetError              a rule-set TOML file is unreadable or invalid (names file and field)
     ├── ModelError                onnxruntime failed to load or run a model (translated at the seam)
     └── RegistryError             a model cannot be installed, loaded or rolled back
          ├── ManifestError        the manifest is missing, unreadable or malformed
          ├── SignatureError       unsigned, unknown key, or the Ed25519 signature does not verify
          ├── IntegrityError       the model file's SHA-256 differs from the manifest
          └── VersionError         a downgrade without explicit rollback, or nothing to roll back to

Foreign exceptions (pydantic ``ValidationError``, onnxruntime's ``Fail``/``InvalidArgument``,
``cryptography``'s ``InvalidSignature``) never leave this package: they are translated here.
"""

from __future__ import annotations

__all__ = [
    "InferenceError",
    "IntegrityError",
    "ManifestError",
    "ModelError",
    "RegistryError",
    "RulesetError",
    "SignatureError",
    "VersionError",
]


class InferenceError(Exception):
    """Base class of every error raised by the ``inference`` package."""


class RulesetError(InferenceError):
    """A rule set could not be loaded; the message names the file and the offending field."""


class ModelError(InferenceError):
    """The ONNX runtime failed to load or evaluate a model."""


class RegistryError(InferenceError):
    """A model could not be installed, loaded or rolled back; the running model is unchanged."""


class ManifestError(RegistryError):
    """The model manifest is missing, not JSON, or lacks a required field."""


class SignatureError(RegistryError):
    """The manifest is unsigned, signed by an untrusted key, or its signature is invalid."""


class IntegrityError(RegistryError):
    """The model file does not match the SHA-256 recorded in its manifest."""


class VersionError(RegistryError):
    """Refused version change: a downgrade outside rollback, or no previous version kept."""
