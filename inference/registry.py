"""Signed model registry on local disk: install, list, roll back, load, hot-swap.

A model is installed only with a manifest (JSON: name, version (MAJOR.MINOR.PATCH), sha256 of the
ONNX file, feature names, key_id, and an Ed25519 ``signature`` over the canonical JSON of every
other field: sorted keys, no spaces, UTF-8), signed by a key in the trusted set and checked with
``cryptography``.  Nothing is fetched from the network.

Layout under ``root``::

    store/<name>/<version>/model.onnx + manifest.json
    state.json       {"current": {"name", "version"} | null, "previous": ... | null}

``state.json`` is replaced atomically (write, fsync, rename).  A newer version becomes current and
the old current is kept as ``previous``; an older or equal version is refused except through
``rollback``, which makes ``previous`` current again.  Every load re-checks hash and signature, so
a file tampered with on disk is refused too.  A refused model never replaces the running one.

Trusted keys are PEM public keys (``*.pub``) in a directory; the repository ships only
``models/trusted_keys/dev.pub``, which production sites replace with their own.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shutil
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from inference.errors import (
    IntegrityError,
    ManifestError,
    RegistryError,
    SignatureError,
    VersionError,
)
from inference.model import RiskModel

__all__ = [
    "ModelHandle",
    "current_version",
    "ModelInfo",
    "ModelManifest",
    "install",
    "key_id",
    "list_models",
    "load_current",
    "load_file",
    "load_trusted_keys",
    "rollback",
    "sign_manifest",
]

_SEMVER = re.compile(r"^(\d+)\.(\d+)\.(\d+)$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
TrustedKeys = Mapping[str, Ed25519PublicKey]


@dataclass(frozen=True, slots=True)
class ModelManifest:
    name: str
    version: str
    sha256: str
    features: tuple[str, ...]
    key_id: str
    signature: str


@dataclass(frozen=True, slots=True)
class ModelInfo:
    name: str
    version: str
    sha256: str
    path: Path
    current: bool = False
    previous: bool = False


def key_id(public_key: Ed25519PublicKey) -> str:
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def _canonical(fields: Mapping[str, object]) -> bytes:
    return json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def sign_manifest(fields: Mapping[str, object], private_key: Ed25519PrivateKey) -> dict[str, Any]:
    """Add ``key_id`` and ``signature`` to manifest fields (used by the training script)."""
    unsigned = {k: v for k, v in fields.items() if k != "signature"}
    unsigned["key_id"] = key_id(private_key.public_key())
    signature = private_key.sign(_canonical(unsigned))
    return {**unsigned, "signature": base64.b64encode(signature).decode("ascii")}


def load_trusted_keys(directory: str | Path) -> dict[str, Ed25519PublicKey]:
    """Every ``*.pub`` PEM Ed25519 public key in ``directory``, by key id."""
    keys: dict[str, Ed25519PublicKey] = {}
    for path in sorted(Path(directory).glob("*.pub")):
        try:
            key = serialization.load_pem_public_key(path.read_bytes())
        except (OSError, ValueError) as exc:
            raise SignatureError(f"{path}: not a PEM public key: {exc}") from exc
        if not isinstance(key, Ed25519PublicKey):
            raise SignatureError(f"{path}: not an Ed25519 public key")
        keys[key_id(key)] = key
    return keys


def read_manifest(path: str | Path, trusted_keys: TrustedKeys) -> ModelManifest:
    """Parse a manifest and verify its signature; raises before anything is trusted."""
    try:
        raw = json.loads(Path(path).read_bytes())
    except (OSError, ValueError) as exc:
        raise ManifestError(f"{path}: cannot read manifest: {exc}") from exc
    if not isinstance(raw, dict):
        raise ManifestError(f"{path}: manifest must be a JSON object")
    signature = raw.get("signature")
    if not isinstance(signature, str) or not signature:
        raise SignatureError(f"{path}: manifest is unsigned")
    key = trusted_keys.get(str(raw.get("key_id")))
    if key is None:
        raise SignatureError(f"{path}: signed by untrusted key {raw.get('key_id')!r}")
    unsigned = {k: v for k, v in raw.items() if k != "signature"}
    try:
        key.verify(base64.b64decode(signature, validate=True), _canonical(unsigned))
    except (InvalidSignature, ValueError) as exc:
        raise SignatureError(f"{path}: signature does not verify") from exc
    return _manifest_fields(raw, path)


def _manifest_fields(raw: Mapping[str, Any], path: str | Path) -> ModelManifest:
    for field in ("name", "version", "sha256", "features"):
        if field not in raw:
            raise ManifestError(f"{path}: missing field {field!r}")
    name, version, digest, features = raw["name"], raw["version"], raw["sha256"], raw["features"]
    if not isinstance(name, str) or not _NAME.match(name):
        raise ManifestError(f"{path}: name {name!r} is not a valid model name")
    if not isinstance(version, str) or not _SEMVER.match(version):
        raise ManifestError(f"{path}: version {version!r} is not MAJOR.MINOR.PATCH")
    if not isinstance(digest, str) or not re.fullmatch(r"[0-9a-f]{64}", digest):
        raise ManifestError(f"{path}: sha256 must be 64 lowercase hex digits")
    if not isinstance(features, list) or not all(isinstance(f, str) for f in features):
        raise ManifestError(f"{path}: features must be a list of names")
    return ModelManifest(name, version, digest, tuple(features), str(raw["key_id"]),
                         str(raw["signature"]))


def _semver(version: str) -> tuple[int, int, int]:
    match = _SEMVER.match(version)
    if match is None:
        raise ManifestError(f"version {version!r} is not MAJOR.MINOR.PATCH")
    major, minor, patch = match.groups()
    return int(major), int(minor), int(patch)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _load_verified(model_path: Path, manifest: ModelManifest) -> RiskModel:
    try:
        actual = _sha256(model_path)
    except OSError as exc:
        raise IntegrityError(f"{model_path}: cannot read: {exc.strerror}") from exc
    if actual != manifest.sha256:
        raise IntegrityError(f"{model_path}: sha256 {actual} differs from manifest {manifest.sha256}")
    model = RiskModel(model_path.read_bytes(), manifest.name, manifest.version, manifest.features)
    model.predict([0.0] * len(manifest.features))  # smoke run before it can be swapped in
    return model


def _state_path(root: Path) -> Path:
    return root / "state.json"


def _read_state(root: Path) -> dict[str, dict[str, str] | None]:
    try:
        data = json.loads(_state_path(root).read_bytes())
    except FileNotFoundError:
        return {"current": None, "previous": None}
    except (OSError, ValueError) as exc:
        raise RegistryError(f"{_state_path(root)}: unreadable registry state: {exc}") from exc
    return {"current": data.get("current"), "previous": data.get("previous")}


def _write_state(root: Path, state: Mapping[str, object]) -> None:
    tmp = root / "state.json.tmp"
    with tmp.open("wb") as handle:
        handle.write(json.dumps(state, sort_keys=True, indent=2).encode())
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, _state_path(root))


def _slot(root: Path, name: str, version: str) -> Path:
    return root / "store" / name / version


_LOCK = threading.Lock()  # one installer at a time within a process


def install(
    root: str | Path, model_path: str | Path, manifest_path: str | Path, trusted_keys: TrustedKeys
) -> ModelInfo:
    """Verify and install a model as current; the old current becomes the rollback target."""
    root, model_path = Path(root), Path(model_path)
    manifest = read_manifest(manifest_path, trusted_keys)
    _load_verified(model_path, manifest)
    with _LOCK:
        state = _read_state(root)
        current = state["current"]
        if current is not None and current["name"] == manifest.name and (
            _semver(manifest.version) <= _semver(current["version"])
        ):
            raise VersionError(
                f"refusing {manifest.name} {manifest.version}: current is {current['version']}; "
                "an older version is only reachable through rollback"
            )
        slot = _slot(root, manifest.name, manifest.version)
        staging = slot.with_name(slot.name + ".staging")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        shutil.copyfile(model_path, staging / "model.onnx")
        shutil.copyfile(manifest_path, staging / "manifest.json")
        shutil.rmtree(slot, ignore_errors=True)
        os.replace(staging, slot)
        entry = {"name": manifest.name, "version": manifest.version}
        _write_state(root, {"current": entry, "previous": current})
    return ModelInfo(manifest.name, manifest.version, manifest.sha256, slot, current=True)


def rollback(root: str | Path) -> ModelInfo:
    """Make the kept previous version current again."""
    root = Path(root)
    with _LOCK:
        state = _read_state(root)
        previous = state["previous"]
        if previous is None:
            raise VersionError(f"{root}: no previous model version to roll back to")
        _write_state(root, {"current": previous, "previous": None})
    slot = _slot(root, previous["name"], previous["version"])
    digest = json.loads((slot / "manifest.json").read_bytes()).get("sha256", "")
    return ModelInfo(previous["name"], previous["version"], str(digest), slot, current=True)


def list_models(root: str | Path) -> list[ModelInfo]:
    """Installed models, sorted by name and version, flagged current / previous."""
    root = Path(root)
    state = _read_state(root)
    out: list[ModelInfo] = []
    for manifest_path in sorted((root / "store").glob("*/*/manifest.json")):
        slot = manifest_path.parent
        try:
            digest = str(json.loads(manifest_path.read_bytes()).get("sha256", ""))
        except ValueError:
            digest = ""
        entry = {"name": slot.parent.name, "version": slot.name}
        out.append(ModelInfo(entry["name"], entry["version"], digest, slot,
                             current=state["current"] == entry, previous=state["previous"] == entry))
    return sorted(out, key=lambda m: (m.name, _semver(m.version)))


def load_current(root: str | Path, trusted_keys: TrustedKeys) -> RiskModel:
    """Load the current model, re-checking its signature and hash on disk."""
    root = Path(root)
    current = _read_state(root)["current"]
    if current is None:
        raise RegistryError(f"{root}: no model installed")
    slot = _slot(root, current["name"], current["version"])
    manifest = read_manifest(slot / "manifest.json", trusted_keys)
    return _load_verified(slot / "model.onnx", manifest)


def load_file(model_path: str | Path, manifest_path: str | Path, trusted_keys: TrustedKeys) -> RiskModel:
    """Load a model straight from a file and its signed manifest, without installing it
    (the model shipped in ``models/`` when the registry is still empty)."""
    manifest = read_manifest(manifest_path, trusted_keys)
    return _load_verified(Path(model_path), manifest)


def current_version(root: str | Path) -> tuple[str, str] | None:
    """(name, version) the registry marks current, or None; cheap enough to call per batch."""
    current = _read_state(Path(root))["current"]
    return None if current is None else (current["name"], current["version"])


class ModelHandle:
    """The running model, swapped atomically.

    Evaluators take ``handle.current`` once per evaluation and use that object: a swap replaces
    the reference (atomic in CPython), so an evaluation in flight finishes on the old session.
    """

    def __init__(self, model: RiskModel | None = None):
        self._model = model

    @property
    def current(self) -> RiskModel | None:
        return self._model

    def swap(self, model: RiskModel) -> RiskModel | None:
        old, self._model = self._model, model
        return old

    def reload(self, root: str | Path, trusted_keys: TrustedKeys) -> RiskModel:
        """Load the registry's current model and swap it in; on any error the old one stays."""
        model = load_current(root, trusted_keys)
        self.swap(model)
        return model
