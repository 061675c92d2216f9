"""MLLP over TLS with client certificates, and the sender allowlists, as configured by
``VITALGATE_MLLP_*`` settings (through ``listener_config`` and ``mllp_service``)."""

from __future__ import annotations

import datetime as dt
import ssl
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from gateway.inbox import list_entries
from gateway.mllp import mllp_service, parse_senders, sender_allowed
from gateway.mllp.client import MllpClient
from gateway.settings import Settings

from .test_mllp_listener import err_code, msa, oru


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _issue(subject: str, key: ec.EllipticCurvePrivateKey, issuer: str, issuer_key: ec.EllipticCurvePrivateKey,
           *, ca: bool) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    b = (x509.CertificateBuilder().subject_name(_name(subject)).issuer_name(_name(issuer))
         .public_key(key.public_key()).serial_number(x509.random_serial_number())
         .not_valid_before(now - dt.timedelta(minutes=1)).not_valid_after(now + dt.timedelta(days=1))
         .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if not ca:
        b = b.add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
    return b.sign(issuer_key, hashes.SHA256())


def _write(path: Path, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey | None = None) -> None:
    data = cert.public_bytes(serialization.Encoding.PEM)
    if key is not None:
        data += key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption())
    path.write_bytes(data)


@pytest.fixture
def pki(tmp_path: Path) -> dict[str, Path]:
    """A CA, a server certificate (localhost) and a client certificate, both from the CA,
    plus a client certificate from another, unknown CA."""
    ca_key, other_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = _issue("Vitalgate test CA", ca_key, "Vitalgate test CA", ca_key, ca=True)
    paths = {n: tmp_path / f"{n}.pem" for n in ("ca", "server", "client", "stranger")}
    _write(paths["ca"], ca)
    for name, issuer, issuer_key in (("server", "Vitalgate test CA", ca_key),
                                     ("client", "Vitalgate test CA", ca_key),
                                     ("stranger", "Other CA", other_key)):
        key = ec.generate_private_key(ec.SECP256R1())
        _write(paths[name], _issue(name, key, issuer, issuer_key, ca=False), key)
    return paths


def _client_ctx(pki: dict[str, Path], cert: str | None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(pki["ca"]))
    if cert:
        ctx.load_cert_chain(str(pki[cert]))
    return ctx


async def _call(port: int, ctx: ssl.SSLContext | None, payload: bytes) -> bytes | None:
    async with MllpClient("localhost" if ctx else "127.0.0.1", port, ssl_context=ctx, timeout=5) as c:
        return await c.call(payload)


def settings(db: str = "sqlite:///unused.db", **values: object) -> Settings:
    return Settings(database_url=db, mllp_port=0, **values)  # type: ignore[arg-type]


async def test_tls_with_client_certificates_from_settings(store, pki) -> None:
    s = settings(mllp_tls_cert=str(pki["server"]), mllp_tls_ca=str(pki["ca"]))  # key in the same PEM
    async with mllp_service(s, store) as server:
        ack = await _call(server.port, _client_ctx(pki, "client"), oru("tls-ok"))
        for refused in (None, "stranger"):  # no client certificate, or one from another CA
            with pytest.raises((ssl.SSLError, ConnectionError)):
                got = await _call(server.port, _client_ctx(pki, refused), oru(f"tls-{refused}"))
                assert got is None  # TLS 1.3 may report the refusal only as a closed stream
                raise ConnectionError("closed")
        with pytest.raises((ssl.SSLError, ConnectionError, OSError)):  # plain TCP gets nothing
            got = await _call(server.port, None, oru("plain"))
            assert got is None
            raise ConnectionError("closed")
    assert ack is not None and msa(ack) == ("AA", "tls-ok")
    assert [e.control_id for e in await list_entries(store)] == ["tls-ok"]


async def test_peer_allowlist_from_settings(store) -> None:
    async with mllp_service(settings(mllp_allow_peers="10.9.0.0/16"), store) as server:
        refused = await _call(server.port, None, oru("peer-refused"))
    async with mllp_service(settings(mllp_allow_peers="10.9.0.0/16, 127.0.0.1"), store) as server:
        allowed = await _call(server.port, None, oru("peer-ok"))
    assert refused is None
    assert allowed is not None and msa(allowed) == ("AA", "peer-ok")
    assert [e.control_id for e in await list_entries(store)] == ["peer-ok"]


async def test_sender_allowlist_refuses_with_ar_and_keeps_a_dead_letter(store) -> None:
    s = settings(mllp_allow_senders="MON1/ICU, */LAB")
    async with mllp_service(s, store) as server:
        ok = await _call(server.port, None, oru("snd-1", app="MON1"))
        refused = await _call(server.port, None, oru("snd-2", app="MON2"))
    assert ok is not None and msa(ok) == ("AA", "snd-1")
    assert refused is not None and msa(refused) == ("AR", "snd-2") and err_code(refused) == 207
    [dead] = await list_entries(store, status="dead")
    assert dead.control_id == "snd-2" and "not allowed" in (dead.reason or "")


def test_sender_rules() -> None:
    rules = parse_senders("MON1, PIIC/ICU-A, */LAB")
    assert sender_allowed("MON1", "ANY", rules)
    assert sender_allowed("MON1^00AB^EUI-64", "ICU", rules)  # namespace ID of MSH-3
    assert sender_allowed("PIIC", "ICU-A^x^L", rules) and not sender_allowed("PIIC", "ICU-B", rules)
    assert sender_allowed("ANALYSER", "LAB", rules) and not sender_allowed("ANALYSER", "ICU", rules)
    assert sender_allowed("whoever", "", ())  # no rules: everyone
    for bad in ("*", "APP/", "/FAC"):
        with pytest.raises(ValueError, match="bad sender rule"):
            parse_senders(bad)
