"""Signed model registry: accept, reject (unsigned, untrusted, tampered), downgrade, rollback, swap."""

import json

import pytest

from inference.errors import (
    IntegrityError,
    ManifestError,
    ModelError,
    RegistryError,
    SignatureError,
    VersionError,
)
from inference.registry import (
    ModelHandle,
    install,
    list_models,
    load_current,
    load_trusted_keys,
    rollback,
    sign_manifest,
)

from .conftest import write_key


@pytest.fixture
def env(trained, tmp_path):
    out, key, keys_dir = trained
    return {
        "model": out / "deterioration.onnx",
        "manifest": out / "deterioration.manifest.json",
        "key": key,
        "keys": load_trusted_keys(keys_dir),
        "root": tmp_path / "registry",
        "tmp": tmp_path,
    }


def _manifest(env, name, **changes):
    fields = json.loads(env["manifest"].read_text())
    fields.update(changes)
    path = env["tmp"] / name
    path.write_text(json.dumps(sign_manifest(fields, env["key"])))
    return path


def test_install_and_list(env):
    info = install(env["root"], env["model"], env["manifest"], env["keys"])
    assert (info.name, info.version, info.current) == ("deterioration", "1.0.0", True)
    [listed] = list_models(env["root"])
    assert listed.current and not listed.previous and listed.sha256 == info.sha256
    model = load_current(env["root"], env["keys"])
    assert model.version == "1.0.0"


def test_unsigned_manifest_rejected(env):
    fields = json.loads(env["manifest"].read_text())
    del fields["signature"]
    path = env["tmp"] / "unsigned.json"
    path.write_text(json.dumps(fields))
    with pytest.raises(SignatureError, match="unsigned"):
        install(env["root"], env["model"], path, env["keys"])
    assert list_models(env["root"]) == []


def test_untrusted_key_rejected(env):
    other = write_key(env["tmp"] / "other")
    fields = json.loads(env["manifest"].read_text())
    path = env["tmp"] / "other.json"
    path.write_text(json.dumps(sign_manifest(fields, other)))
    with pytest.raises(SignatureError, match="untrusted key"):
        install(env["root"], env["model"], path, env["keys"])


def test_edited_manifest_fails_signature(env):
    fields = json.loads(env["manifest"].read_text())
    fields["version"] = "9.9.9"  # changed after signing
    path = env["tmp"] / "edited.json"
    path.write_text(json.dumps(fields))
    with pytest.raises(SignatureError, match="does not verify"):
        install(env["root"], env["model"], path, env["keys"])


def test_tampered_model_rejected(env):
    bad = env["tmp"] / "tampered.onnx"
    data = bytearray(env["model"].read_bytes())
    data[-1] ^= 0x01
    bad.write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match="differs from manifest"):
        install(env["root"], bad, env["manifest"], env["keys"])


def test_signed_but_broken_model_rejected(env):
    junk = env["tmp"] / "junk.onnx"
    junk.write_bytes(b"junk")
    import hashlib

    manifest = _manifest(env, "junk.json", sha256=hashlib.sha256(b"junk").hexdigest())
    with pytest.raises(ModelError):
        install(env["root"], junk, manifest, env["keys"])


def test_bad_manifest_fields(env):
    with pytest.raises(ManifestError, match="MAJOR.MINOR.PATCH"):
        install(env["root"], env["model"], _manifest(env, "v.json", version="latest"), env["keys"])
    (env["tmp"] / "notjson.json").write_text("{")
    with pytest.raises(ManifestError, match="cannot read manifest"):
        install(env["root"], env["model"], env["tmp"] / "notjson.json", env["keys"])


def test_upgrade_keeps_previous_and_refuses_downgrade(env):
    install(env["root"], env["model"], env["manifest"], env["keys"])
    install(env["root"], env["model"], _manifest(env, "v11.json", version="1.1.0"), env["keys"])
    flags = {m.version: (m.current, m.previous) for m in list_models(env["root"])}
    assert flags == {"1.0.0": (False, True), "1.1.0": (True, False)}
    with pytest.raises(VersionError, match="only reachable through rollback"):
        install(env["root"], env["model"], env["manifest"], env["keys"])
    with pytest.raises(VersionError):
        install(env["root"], env["model"], _manifest(env, "same.json", version="1.1.0"), env["keys"])
    # versions compare numerically, not as strings
    install(env["root"], env["model"], _manifest(env, "v1_10.json", version="1.10.0"), env["keys"])
    assert load_current(env["root"], env["keys"]).version == "1.10.0"


def test_rollback(env):
    install(env["root"], env["model"], env["manifest"], env["keys"])
    install(env["root"], env["model"], _manifest(env, "v2.json", version="2.0.0"), env["keys"])
    info = rollback(env["root"])
    assert info.version == "1.0.0"
    assert load_current(env["root"], env["keys"]).version == "1.0.0"
    with pytest.raises(VersionError, match="no previous"):
        rollback(env["root"])


def test_rollback_with_nothing_installed(env):
    with pytest.raises(VersionError):
        rollback(env["root"])
    with pytest.raises(RegistryError, match="no model installed"):
        load_current(env["root"], env["keys"])


def test_file_tampered_on_disk_is_refused_at_load(env):
    info = install(env["root"], env["model"], env["manifest"], env["keys"])
    (info.path / "model.onnx").write_bytes(b"swapped behind our back")
    with pytest.raises(IntegrityError):
        load_current(env["root"], env["keys"])


def test_hot_swap_keeps_old_model_on_failure_and_in_flight(env):
    install(env["root"], env["model"], env["manifest"], env["keys"])
    handle = ModelHandle()
    first = handle.reload(env["root"], env["keys"])
    in_flight = handle.current  # an evaluation took its reference
    install(env["root"], env["model"], _manifest(env, "v12.json", version="1.2.0"), env["keys"])
    second = handle.reload(env["root"], env["keys"])
    assert handle.current is second and second.version == "1.2.0"
    assert in_flight is first and 0.0 <= in_flight.predict([0.0] * 10) <= 1.0
    (env["root"] / "store" / "deterioration" / "1.2.0" / "model.onnx").write_bytes(b"x")
    with pytest.raises(IntegrityError):
        handle.reload(env["root"], env["keys"])
    assert handle.current is second
