"""Golden output of the MLLP ingest's loop side: what a frame turns into before its store job.

For every HL7v2 sample and a run of bench-style messages (8 beds, a new time each, so the
mapping's and the indexer's memos are hit as in a real stream), the mapped resources' JSON,
the prepared JSON and index rows (what the store writes) and the ACK bytes (fixed clock and
ACK control ids) are hashed and compared with ``ingest_golden.json``. The speed-ups on this
path (memoised codes, series rows, ACK templates) must never change a stored byte or an ACK;
a deliberate change of the output regenerates the file:

    .venv/bin/python tests/gateway/unit/test_ingest_golden.py
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fhir_server.storage import Store, dumps, make_engine
from gateway.mllp.ingest import Ingestor
from gateway.mllp.wiring import mapping_context
from gateway.settings import Settings
from mappers.hl7v2 import HL7Error, accept_ack_code, check_acceptable, map_message, parse, read_header_lenient

SAMPLES = Path("/work/shared/samples/hl7v2")
GOLDEN = Path(__file__).with_name("ingest_golden.json")
NOW = datetime(2026, 11, 29, 12, 0, 0, tzinfo=UTC)
BEDS = 8


def bench_message(bed: int, n: int) -> bytes:
    """The shape ``bench/mllp_ingest.py`` sends: 10 OBX, one NIBP panel, OBX-14 a second later each."""
    ts = time.strftime("%Y%m%d%H%M%S", time.gmtime(1_700_000_000 + n)) + "+0000"
    obx = [("147842", "MDC_ECG_HEART_RATE", "72", "/min"), ("150456", "MDC_PULS_OXIM_SAT_O2", "97", "%"),
           ("151562", "MDC_RESP_RATE", "16", "/min"), ("150344", "MDC_TEMP", "36.9", "Cel"),
           ("150021", "MDC_PRESS_BLD_NONINV_SYS", "120", "mm[Hg]"),
           ("150022", "MDC_PRESS_BLD_NONINV_DIA", "80", "mm[Hg]"),
           ("150023", "MDC_PRESS_BLD_NONINV_MEAN", "93", "mm[Hg]"),
           ("149530", "MDC_PULS_OXIM_PULS_RATE", str(60 + n % 30), "/min"),
           ("151708", "MDC_AWAY_CO2_ET", "38", "mm[Hg]"), ("150087", "MDC_PRESS_BLD_VEN_CENT_MEAN", "8", "mm[Hg]")]
    lines = [f"MSH|^~\\&|BENCH{bed}^{bed:016X}^EUI-64|ICU|VG|HOSP|{ts}||ORU^R01^ORU_R01|g{bed}-{n}|P|2.6",
             f"PID|||BM{bed:04d}^^^HOSP^MR||BENCH^PATIENT{bed}", f"PV1||I|ICU^1^{bed}",
             f"OBR|1|||182777000^monitoring of patient^SCT|||{ts}"]
    lines += [f"OBX|{i}|NM|{code}^{ref}^MDC|1.1.1.{i}|{value}|{unit}^{unit}^UCUM|||||R|||{ts}"
              for i, (code, ref, value, unit) in enumerate(obx, 1)]
    return ("\r".join(lines) + "\r").encode()


def inputs() -> list[tuple[str, bytes]]:
    found = [(p.name, p.read_bytes()) for p in sorted(SAMPLES.glob("*.hl7"))]
    found += [(f"bench-{n}", bench_message(n % BEDS, n)) for n in range(6 * BEDS)]
    # every sample again: the second time its codes, units and series come from the memos
    return found + [(f"again-{name}", raw) for name, raw in found if not name.startswith("bench")]


def records(tmp: Path) -> dict[str, str]:
    """Name -> sha256 of everything the loop made of that input, in input order."""
    ctx = dataclasses.replace(mapping_context(Settings()), accepted_processing_ids=frozenset("PTD"))
    ing = Ingestor(Store(make_engine(f"sqlite+aiosqlite:///{tmp}/unused.db")), ctx, clock=lambda: NOW)
    ing._ack_prefix = "0" * 12  # noqa: SLF001 - fixed ACK control ids
    out: dict[str, str] = {}
    for name, raw in inputs():
        rec: dict[str, Any] = {}
        header = read_header_lenient(raw)
        try:
            if header is None:
                raise HL7Error(100, "no MSH")
            check_acceptable(header, ctx)
            result = map_message(parse(raw), ctx)
        except HL7Error as err:
            rec["error"] = [err.code, err.text, err.location]
            if header is not None:
                rec["ack"] = ing._ack(header, "AE", err).decode("latin-1")  # noqa: SLF001
        else:
            rec["resources"] = [dumps(r).decode() for r in result.resources]
            rec["keys"] = [list(result.patient_keys), sorted(result.reference_only)]
            prepared = [ing._indexer.prepare(r) for r in result.resources]  # noqa: SLF001
            rec["prepared"] = [None if p is None else [p.tail.decode(), p.meta.decode(), repr(p.index)]
                               for p in prepared]
            rec["ack"] = ing._ack(header, accept_ack_code(header, "accept") or "CA",  # noqa: SLF001
                                  None).decode("latin-1")
        out[name] = hashlib.sha256(json.dumps(rec, sort_keys=True).encode()).hexdigest()
    return out


def test_loop_output_is_the_golden_one(tmp_path: Path) -> None:
    expected = json.loads(GOLDEN.read_text())
    got = records(tmp_path)
    assert list(got) == list(expected)
    assert [name for name in got if got[name] != expected[name]] == []


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        GOLDEN.write_text(json.dumps(records(Path(d)), indent=0) + "\n")
    sys.exit(0)
