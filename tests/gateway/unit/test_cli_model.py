"""``vitalgate model list|install|rollback`` through Typer's CliRunner, on a temporary registry."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import httpx
import respx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from typer.testing import CliRunner

from gateway.cli import app
from inference import list_models, sign_manifest

runner = CliRunner()
SHIPPED = Path(__file__).resolve().parents[3] / "models"


def signed_model(directory: Path, version: str, key: Ed25519PrivateKey, *, tamper: bool = False) -> Path:
    """The shipped ONNX file under a new version, with a manifest signed by ``key``."""
    data = (SHIPPED / "deterioration.onnx").read_bytes()
    features = json.loads((SHIPPED / "deterioration.manifest.json").read_text())["features"]
    model = directory / f"deterioration-{version}.onnx"
    model.write_bytes(data + (b"x" if tamper else b""))
    fields = {"name": "deterioration", "version": version, "sha256": hashlib.sha256(data).hexdigest(),
              "features": features}
    manifest = sign_manifest(fields, key)
    (directory / f"deterioration-{version}.manifest.json").write_text(json.dumps(manifest))
    return model


def trust(directory: Path, key: Ed25519PrivateKey) -> Path:
    keys = directory / "keys"
    keys.mkdir(exist_ok=True)
    (keys / "site.pub").write_bytes(key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    return keys


def cli(*args: str):
    # a wide terminal: rich wraps long messages (pytest's tmp paths) at 80 columns otherwise
    return runner.invoke(app, ["model", *args], env={"COLUMNS": "400"})


def test_install_list_refuse_older_and_roll_back(tmp_path: Path):
    key = Ed25519PrivateKey.generate()
    keys, root = trust(tmp_path, key), tmp_path / "registry"
    opts = ["--model-dir", str(root)]
    assert "no model installed" in cli("list", *opts).output
    for version in ("1.1.0", "1.2.0"):
        r = cli("install", str(signed_model(tmp_path, version, key)), *opts, "--trusted-keys", str(keys))
        assert r.exit_code == 0, r.output
        assert f"installed deterioration {version}" in r.output
    r = cli("install", str(signed_model(tmp_path, "1.0.5", key)), *opts, "--trusted-keys", str(keys))
    assert r.exit_code == 1 and "only reachable through rollback" in r.output
    listing = cli("list", *opts).output
    assert "1.2.0" in listing and "(previous)" in listing
    r = cli("rollback", *opts)
    assert r.exit_code == 0 and "deterioration 1.1.0 is current" in r.output
    assert [m.version for m in list_models(root) if m.current] == ["1.1.0"]
    r = cli("rollback", *opts)
    assert r.exit_code == 1 and "no previous model" in r.output


def test_bad_models_are_refused_with_a_clear_error(tmp_path: Path):
    key, stranger = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    keys, root = trust(tmp_path, key), tmp_path / "registry"
    opts = ["--model-dir", str(root), "--trusted-keys", str(keys)]
    assert cli("install", str(signed_model(tmp_path, "1.1.0", key)), *opts).exit_code == 0
    r = cli("install", str(signed_model(tmp_path, "2.0.0", stranger)), *opts)
    assert r.exit_code == 1 and "untrusted key" in r.output
    r = cli("install", str(signed_model(tmp_path, "2.0.1", key, tamper=True)), *opts)
    assert r.exit_code == 1 and "sha256" in r.output
    unsigned = signed_model(tmp_path, "2.0.2", key)
    manifest = unsigned.with_name("deterioration-2.0.2.manifest.json")
    manifest.write_text(json.dumps({k: v for k, v in json.loads(manifest.read_text()).items() if k != "signature"}))
    r = cli("install", str(unsigned), *opts)
    assert r.exit_code == 1 and "unsigned" in r.output
    assert cli("install", str(tmp_path / "missing.onnx"), *opts).exit_code == 1
    assert [m.version for m in list_models(root) if m.current] == ["1.1.0"]  # the running model stays


@respx.mock
def test_install_from_url(tmp_path: Path):
    key = Ed25519PrivateKey.generate()
    keys, root = trust(tmp_path, key), tmp_path / "registry"
    model = signed_model(tmp_path, "1.3.0", key)
    respx.get("https://models.example.org/deterioration.onnx").mock(
        return_value=httpx.Response(200, content=model.read_bytes()))
    respx.get("https://models.example.org/deterioration.manifest.json").mock(
        return_value=httpx.Response(200, content=model.with_name("deterioration-1.3.0.manifest.json").read_bytes()))
    respx.get("https://models.example.org/gone.onnx").mock(return_value=httpx.Response(404))
    opts = ["--model-dir", str(root), "--trusted-keys", str(keys)]
    r = cli("install", "https://models.example.org/deterioration.onnx", *opts)
    assert r.exit_code == 0, r.output
    r = cli("install", "https://models.example.org/gone.onnx", *opts)
    assert r.exit_code == 1 and "download failed" in r.output
    assert cli("install", "ftp://models.example.org/x.onnx", *opts).exit_code == 1
