"""What each kind of search-index row costs the database, against the same commits without it.

    .venv/bin/python bench/index_cost.py                    # 2,400 bench messages, groups of 8, 3 rounds
    .venv/bin/python bench/index_cost.py --group 4 --rounds 5

Replays ``bench/mllp_ingest.py``'s ceiling rows (resource, version, index rows, change log,
inbox for its 10-OBX ORU^R01 messages) into fresh migrated SQLite files with the store's
pragmas (WAL, ``synchronous=FULL``), once as they are (``all``) and once without each kind of
index row in turn, and once without any (``no_index_rows``). The variants take turns in each
round; the figure is the median round's wall time a message (the first third of the commits
fills the indexes and is not timed). ``saved_us_per_message`` is what leaving that kind out
saves against ``all`` in the same round order: the price of that search capability on the
write path. Run it alone: other work on the two cores moves a round by up to 30 %.

Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from mllp_ingest import _ceiling_rows, _mapped, _replay, _replay_db, message, without_rows  # noqa: E402

Row = dict[str, Any]
Batches = list[list[tuple[str, list[Row]]]]
_SERIES_END = "Obs.pce|"  # fhir_server.search.composite: a series' end-time rows

# kind -> predicate on (table, row): the rows left out in that variant
KINDS: dict[str, Callable[[str, Row], bool]] = {
    "series_end_time": lambda t, r: t == "idx_date" and r["param"].startswith(_SERIES_END),
    "observation_date": lambda t, r: t == "idx_date" and not r["param"].startswith(_SERIES_END),
    "token_code": lambda t, r: t == "idx_token" and r["param"] in ("Observation.code",
                                                                   "Observation.component-code"),
    "token_status_category": lambda t, r: t == "idx_token" and r["param"] in ("Observation.status",
                                                                              "Observation.category"),
    "token_identifier": lambda t, r: t == "idx_token" and r["param"] == "Observation.identifier",
    "quantity": lambda t, r: t == "idx_quantity",
    "reference": lambda t, r: t == "idx_reference",
    "no_index_rows": lambda t, r: t.startswith("idx_"),  # as mllp_ingest's ceiling without index rows
}


def timed(batches: Batches, group: int) -> float:
    """Wall µs a message over the last two thirds of the commits, in a fresh file."""
    db, path = _replay_db()
    try:
        skip = len(batches) // 3
        _replay(db, batches[:skip])
        elapsed = _replay(db, batches[skip:])
    finally:
        db.close()
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
    return elapsed / ((len(batches) - skip) * group) * 1e6


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--messages", type=int, default=2400)
    p.add_argument("--group", type=int, default=8, help="messages a commit")
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args()

    msgs = [message(i % 8, i, "p") for i in range(args.messages)]
    base = _ceiling_rows(msgs, _mapped(msgs), args.group)
    variants: dict[str, tuple[Batches, int]] = {"all": (base, 0)}
    for kind, pick in KINDS.items():
        variants[kind] = without_rows(base, pick)
    rounds: dict[str, list[float]] = {name: [] for name in variants}
    started = os.getloadavg()[0]
    for _ in range(args.rounds):
        for name, (batches, _) in variants.items():
            rounds[name].append(timed(batches, args.group))
    median = {name: statistics.median(us) for name, us in rounds.items()}
    print(json.dumps({
        "machine": {"cpus": os.cpu_count(), "loadavg_1min_start": round(started, 2),
                    "loadavg_1min_end": round(os.getloadavg()[0], 2)},
        "messages": args.messages, "group": args.group, "rounds": args.rounds,
        "baseline": "all: every row the store writes for the message",
        "all_us_per_message": round(median["all"]),
        "all_observations_per_s": round(10 * 1e6 / median["all"]),
        "left_out": {
            kind: {"rows_per_message": round(variants[kind][1] / args.messages, 1),
                   "us_per_message": round(median[kind]),
                   "saved_us_per_message": round(median["all"] - median[kind]),
                   "saved_share": round(1 - median[kind] / median["all"], 3),
                   "rounds_us": [round(x) for x in rounds[kind]]}
            for kind in KINDS
        },
        "all_rounds_us": [round(x) for x in rounds["all"]],
    }, indent=2))


if __name__ == "__main__":
    main()
