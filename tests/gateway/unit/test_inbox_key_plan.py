"""The duplicate check of every MLLP commit probes ix_inbox_key, never a walk of the accepted rows.

It runs once per message in the writer's transaction (``WriteTx.expect_empty``): a plan that
walked ix_inbox_status (the accepted rows are nearly all of the inbox) would slow every commit
down as the inbox grows. Checked without statistics and with ANALYZE's over a filled inbox.
"""

from __future__ import annotations

import sqlite3

import pytest

from fhir_server.storage import make_engine, upgrade
from gateway.inbox.records import Sender, accepted_key_check


@pytest.fixture
async def db(tmp_path):
    path = tmp_path / "inbox.db"
    engine = make_engine(f"sqlite+aiosqlite:///{path}")
    await upgrade(engine)
    await engine.dispose()
    conn = sqlite3.connect(path)
    yield conn
    conn.close()


def _plan(db: sqlite3.Connection) -> str:
    sql, params = accepted_key_check(Sender("MON", "ICU", "c42", "ORU^R01"))
    return " ".join(row[-1] for row in db.execute("EXPLAIN QUERY PLAN " + sql, params))


def test_key_check_probes_the_key_index(db) -> None:
    assert "USING INDEX ix_inbox_key" in _plan(db)


def test_key_check_probes_the_key_index_with_statistics_of_a_full_inbox(db) -> None:
    cols = [r[1] for r in db.execute("PRAGMA table_info(inbox)")]
    row = {"received_at": 0, "peer": "p", "sending_app": "MON", "sending_facility": "ICU", "message_type": "ORU^R01",
           "payload_hash": "h", "status": "accepted", "payload": b"x"}
    names = [c for c in cols if c in row] + ["control_id"]
    db.executemany(f"INSERT INTO inbox ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})",
                   [[row[c] for c in names[:-1]] + [f"c{i}"] for i in range(5000)])
    db.execute("ANALYZE")
    db.commit()
    plan = _plan(db)
    assert "USING INDEX ix_inbox_key" in plan and "ix_inbox_status" not in plan
