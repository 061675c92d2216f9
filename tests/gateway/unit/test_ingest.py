"""The ingest pipeline without sockets: outcomes, dead letters, concurrent duplicates."""

from __future__ import annotations

import asyncio

from sqlalchemy import func, select

from fhir_server.storage.schema import ResourceRow, ResourceVersionRow
from gateway.inbox import list_entries
from gateway.mllp import Ingestor
from mappers.hl7v2 import MappingContext


def oru(control_id: str, value: int = 72, msh15: str = "") -> bytes:
    return (
        f"MSH|^~\\&|MON|ICU|||20240301101500+0000||ORU^R01|{control_id}|P|2.6|||{msh15}|\r"
        "PID|||MRN7^^^HOSP^MR\r"
        f"OBX|1|NM|147842^MDC_ECG_HEART_RATE^MDC|1.1.1.1|{value}|/min^/min^UCUM|||||R\r"
    ).encode()


def msa(ack: bytes | None) -> list[str]:
    assert ack is not None
    line = next(s for s in ack.decode().split("\r") if s.startswith("MSA"))
    return line.split("|")[1:3]


async def test_same_message_twice_at_once_is_stored_once(store) -> None:
    ing = Ingestor(store, MappingContext())
    a, b = await asyncio.gather(ing.ingest(oru("same"), "p1"), ing.ingest(oru("same"), "p2"))
    assert sorted([a.status, b.status]) == ["accepted", "duplicate"]
    assert a.ack == b.ack and msa(a.ack) == ["AA", "same"]
    assert len(await list_entries(store)) == 1


async def test_same_key_other_payload_at_once_is_one_accept_one_205(store) -> None:
    ing = Ingestor(store, MappingContext())
    a, b = await asyncio.gather(ing.ingest(oru("k", 70)), ing.ingest(oru("k", 71)))
    assert [msa(a.ack), msa(b.ack)] == [["AA", "k"], ["AE", "k"]]
    assert b"205" in (b.ack or b"")
    assert sorted(e.status for e in await list_entries(store)) == ["accepted", "dead"]


async def test_store_down_answers_ae_and_keeps_nothing(store) -> None:
    ing = Ingestor(store, MappingContext())
    await store.close()
    result = await ing.ingest(oru("down"))
    assert msa(result.ack) == ["AE", "down"]
    assert result.status == "lost"  # not even the dead letter: the sender keeps the message


async def test_oversized_without_msh_gets_no_ack_but_a_dead_letter(store) -> None:
    ing = Ingestor(store, MappingContext())
    result = await ing.oversized(b"x" * 100, 5000, "p")
    assert result.ack is None
    [dead] = await list_entries(store)
    assert dead.status == "dead" and dead.payload == b"x" * 100


async def test_oversized_with_msh_gets_ar(store) -> None:
    ing = Ingestor(store, MappingContext())
    result = await ing.oversized(oru("huge")[:60], 5000, "p")
    assert msa(result.ack) == ["AR", "huge"]


async def test_ne_duplicate_stays_silent(store) -> None:
    ing = Ingestor(store, MappingContext())
    first = await ing.ingest(oru("ne", msh15="NE"))
    again = await ing.ingest(oru("ne", msh15="NE"))
    assert (first.status, first.ack) == ("accepted", None)
    assert (again.status, again.ack) == ("duplicate", None)


async def test_dead_letter_reason_has_code_and_location_but_no_patient_data(store) -> None:
    ing = Ingestor(store, MappingContext())
    bad = oru("bad").replace(b"|72|", b"|seventy|")
    result = await ing.ingest(bad)
    assert msa(result.ack) == ["AE", "bad"]
    [dead] = await list_entries(store, status="dead")
    assert dead.reason is not None and dead.reason.startswith("102 ")
    assert "MRN7" not in dead.reason


async def test_same_key_other_message_type_at_once_is_still_a_duplicate_key(store) -> None:
    ing = Ingestor(store, MappingContext())
    r40 = oru("kt").replace(b"ORU^R01", b"ORU^R40")
    a, b = await asyncio.gather(ing.ingest(oru("kt")), ing.ingest(r40))
    assert [msa(a.ack)[0], msa(b.ack)[0]] == ["AA", "AE"]
    assert b"205" in (b.ack or b"")


async def test_ack_control_ids_are_distinct_across_listeners(store) -> None:
    """MSH-10 of our ACKs: 20 characters, never repeated within a process or by a restart."""
    first, restarted = Ingestor(store, MappingContext()), Ingestor(store, MappingContext())
    acks = [await ing.ingest(oru(f"c{k}-{n}"), "p") for k, ing in enumerate((first, restarted))
            for n in range(3)]
    ids = [next(s for s in (a.ack or b"").decode().split("\r") if s.startswith("MSH")).split("|")[9]
           for a in acks]
    assert all(len(i) == 20 for i in ids) and len(set(ids)) == len(ids)


async def test_resends_among_new_messages_in_one_group_cost_only_themselves(store) -> None:
    # after a restart (a new ingestor, which has not accepted the keys itself) a resend fails its
    # group's duplicate check in the commit: the group's other messages are committed each alone,
    # and only the resends are answered as duplicates
    before_restart = Ingestor(store, MappingContext())
    first = [await before_restart.ingest(oru(f"old{i}", 60 + i)) for i in range(3)]
    ing = Ingestor(store, MappingContext())
    mixed = [oru(f"new{i}", 80 + i) for i in range(6)] + [oru(f"old{i}", 60 + i) for i in range(3)]
    results = await asyncio.gather(*(ing.ingest(m, "p") for m in mixed))
    assert [r.status for r in results] == ["accepted"] * 6 + ["duplicate"] * 3
    assert [r.ack for r in results[6:]] == [r.ack for r in first]  # the very ACKs stored the first time
    entries = await list_entries(store)
    expected = [f"new{i}" for i in range(6)] + [f"old{i}" for i in range(3)]
    assert sorted(e.control_id for e in entries) == sorted(expected)
    assert {e.status for e in entries} == {"accepted"}
    # every message is a reading of the same series at the same time: one Observation, a version
    # for each message stored, none for a resend
    versions = await store.fetch(select(func.count()).select_from(ResourceVersionRow).join(
        ResourceRow, ResourceRow.rid == ResourceVersionRow.rid).where(ResourceRow.type == "Observation"))
    assert versions.scalar() == 9


async def test_a_key_this_ingestor_accepted_is_answered_without_failing_a_group(store) -> None:
    # the check in the commit would fail the group of the messages committed with the resend, and
    # they would then be committed one by one: a key accepted here is answered from the inbox first
    ing = Ingestor(store, MappingContext())
    first = await ing.ingest(oru("again", 60))
    before = store.commits
    results = await asyncio.gather(*(ing.ingest(oru(f"n{i}", 80 + i)) for i in range(6)),
                                   ing.ingest(oru("again", 60)), ing.ingest(oru("again", 61)))
    assert [r.status for r in results] == ["accepted"] * 6 + ["duplicate", "dead"]
    assert results[6].ack == first.ack and b"205" in (results[7].ack or b"")
    # the six new messages in one or two groups, the dead letter in one: never one commit each
    assert store.commits - before <= 3
