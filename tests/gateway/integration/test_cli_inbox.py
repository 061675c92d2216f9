"""``vitalgate inbox list|show|replay`` on a real (SQLite) database filled by the ingest pipeline."""

from __future__ import annotations

import asyncio
import json

import pytest
from typer.testing import CliRunner

from fhir_server.storage import Store, make_engine, upgrade
from gateway.cli import app
from gateway.mllp import Ingestor
from mappers.hl7v2 import MappingContext

runner = CliRunner()


def oru(control_id: str, *, app_: str = "MON1", facility: str = "ICU", processing: str = "P",
        mrn: str = "MRN1") -> bytes:
    return (
        f"MSH|^~\\&|{app_}|{facility}|VG|HOSP|20240301101500+0000||ORU^R01^ORU_R01|{control_id}|"
        f"{processing}|2.6\r"
        f"PID|||{mrn}^^^HOSP^MR||DOE^JANE\r"
        "PV1||I|ICU^1^3\r"
        "OBR|1|||182777000^monitoring of patient^SCT|||20240301101500+0000\r"
        "OBX|1|NM|147842^MDC_ECG_HEART_RATE^MDC|1.1.1.1|80|/min^/min^UCUM|||||R|||20240301101500+0000\r"
    ).encode()


@pytest.fixture
def db(tmp_path) -> str:
    """A database holding: two accepted messages (two senders, two patients), one dead
    letter refused for its processing ID (T)."""
    url = f"sqlite+aiosqlite:///{tmp_path}/inbox.db"

    async def fill() -> None:
        store = Store(make_engine(url))
        await upgrade(store.engine)
        await store.start()
        try:
            ingest = Ingestor(store, MappingContext()).ingest
            assert (await ingest(oru("c-1"), "10.0.0.5:4000")).status == "accepted"
            assert (await ingest(oru("c-2", app_="MON2", mrn="MRN2"), "10.0.0.6:4000")).status == "accepted"
            assert (await ingest(oru("c-3", processing="T"), "10.0.0.5:4001")).status == "dead"
        finally:
            await store.close()

    asyncio.run(fill())
    return url


def rows(url: str, *args: str) -> list[dict]:
    result = runner.invoke(app, ["inbox", "list", "--json", "--database-url", url, *args])
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in result.stdout.splitlines() if line.strip()]


def test_list_searches_by_status_sender_control_id_and_patient(db) -> None:
    assert [r["control_id"] for r in rows(db)] == ["c-3", "c-2", "c-1"]
    assert [r["control_id"] for r in rows(db, "--status", "dead")] == ["c-3"]
    assert [r["control_id"] for r in rows(db, "--sender", "MON2")] == ["c-2"]
    assert [r["control_id"] for r in rows(db, "--sender", "ICU")] == ["c-3", "c-2", "c-1"]
    assert [r["control_id"] for r in rows(db, "--control-id", "c-1")] == ["c-1"]
    assert [r["control_id"] for r in rows(db, "--patient", "MRN2")] == ["c-2"]
    assert rows(db, "--patient", "MRN9") == []
    dead = rows(db, "--status", "dead")[0]
    assert dead["reason"].startswith("202 ") and dead["peer"] == "10.0.0.5:4001"
    table = runner.invoke(app, ["inbox", "list", "--database-url", db])
    assert table.exit_code == 0 and "c-2" in table.stdout and "MON2" in table.stdout


def test_list_refuses_an_unknown_status(db) -> None:
    result = runner.invoke(app, ["inbox", "list", "--status", "lost", "--database-url", db])
    assert result.exit_code == 2 and "unknown status" in result.output


def test_show_prints_outcome_ack_and_message(db) -> None:
    [dead] = rows(db, "--status", "dead")
    shown = runner.invoke(app, ["inbox", "show", str(dead["id"]), "--database-url", db])
    assert shown.exit_code == 0, shown.output
    assert "MSA|AR|c-3" in shown.stdout and "OBX|1|NM|147842" in shown.stdout and "202" in shown.stdout
    raw = runner.invoke(app, ["inbox", "show", str(dead["id"]), "--raw", "--database-url", db])
    assert raw.stdout_bytes == oru("c-3", processing="T")
    missing = runner.invoke(app, ["inbox", "show", "999", "--database-url", db])
    assert missing.exit_code == 1 and "no inbox entry #999" in missing.output


def test_replay_after_a_fix_accepts_and_links_the_rows(db, monkeypatch) -> None:
    [dead] = rows(db, "--status", "dead")
    again = runner.invoke(app, ["inbox", "replay", str(dead["id"]), "--database-url", db])
    assert again.exit_code == 1 and f"#{dead['id']}: dead" in again.stdout  # still refused
    [dead] = rows(db, "--status", "dead")  # the newest dead letter, made by that replay
    monkeypatch.setenv("VITALGATE_MLLP_ACCEPTED_PROCESSING_IDS", "P,T")  # the fix
    fixed = runner.invoke(app, ["inbox", "replay", str(dead["id"]), "--database-url", db])
    assert fixed.exit_code == 0, fixed.output
    assert f"#{dead['id']}: accepted" in fixed.stdout
    assert rows(db, "--status", "dead") == []
    replayed = rows(db, "--status", "replayed")
    assert len(replayed) == 2 and all("replayed as inbox #" in r["reason"] for r in replayed)
    assert [r["control_id"] for r in rows(db, "--status", "accepted")] == ["c-3", "c-2", "c-1"]
    not_dead = runner.invoke(app, ["inbox", "replay", str(rows(db, "--control-id", "c-1")[0]["id"]),
                                   "--database-url", db])
    assert not_dead.exit_code == 1 and "not a dead letter" in not_dead.stdout


def test_unmigrated_database_is_a_clear_error(tmp_path) -> None:
    result = runner.invoke(app, ["inbox", "list", "--database-url", f"sqlite:///{tmp_path}/empty.db"])
    assert result.exit_code == 1 and "vitalgate db upgrade" in result.output
