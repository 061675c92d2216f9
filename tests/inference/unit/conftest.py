"""Shared fixtures: a model trained once per session by the real script, signed by a test key."""

import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

REPO = Path(__file__).resolve().parents[3]


def write_key(directory: Path, name: str = "test") -> Ed25519PrivateKey:
    key = Ed25519PrivateKey.generate()
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{name}.pem").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    (directory / f"{name}.pub").write_bytes(key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    return key


def run_training(out: Path, key_pem: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(REPO / "scripts" / "train_model.py"), "--out", str(out),
         "--signing-key", str(key_pem)],
        check=True, capture_output=True, text=True, cwd=REPO,
    )


@pytest.fixture(scope="session")
def trained(tmp_path_factory):
    """(model dir, private key, trusted-keys dir) for a model trained with a test key."""
    base = tmp_path_factory.mktemp("trained")
    keys = base / "keys"
    key = write_key(keys)
    run_training(base / "out", keys / "test.pem")
    return base / "out", key, keys
