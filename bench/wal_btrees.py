"""Where a group commit's WAL pages go, by b-tree, and what the commit costs against the inserts.

    .venv/bin/python bench/wal_btrees.py                    # 2,000 bench messages, groups of 8
    .venv/bin/python bench/wal_btrees.py --messages 4000 --group 16

Replays the rows the store writes for ``bench/mllp_ingest.py``'s messages (its ceiling's
rows: resource, version, index rows, change log, inbox) into a fresh migrated SQLite file
with the store's pragmas and no checkpoints, so every frame stays in the WAL. The second half
of the commits is measured (the indexes already hold the first half):

- ``btrees``: WAL frames a commit per b-tree and page kind (``dbstat``), largest first.
  Deterministic: load does not change it. A commit's CPU grows with its pages (each frame is
  checksummed and written), so this is the list to shorten.
- ``cpu_us_per_message``: thread CPU of the ``executemany`` calls and of the ``COMMIT``,
  and their wall time (the difference is mostly the fsync).

Prints one JSON object.
"""

from __future__ import annotations

import argparse
import collections
import json
import struct
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from mllp_ingest import _ceiling_rows, _mapped, _replay, _replay_db, message  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--messages", type=int, default=2000)
    p.add_argument("--group", type=int, default=8, help="messages a commit (the bench's 8 senders: 8)")
    p.add_argument("--top", type=int, default=25, help="b-trees listed")
    args = p.parse_args()

    msgs = [message(i % 8, i, "p") for i in range(args.messages)]
    batches = _ceiling_rows(msgs, _mapped(msgs), args.group)
    db, path = _replay_db(("wal_autocheckpoint=0",))
    page = db.execute("PRAGMA page_size").fetchone()[0]
    wal = Path(f"{path}-wal")
    skip = len(batches) // 2
    _replay(db, batches[:skip])
    before = wal.stat().st_size

    cost = dict.fromkeys(("inserts_cpu", "inserts_wall", "commit_cpu", "commit_wall"), 0.0)
    for tables in batches[skip:]:
        w0, c0 = time.perf_counter(), time.thread_time()
        db.execute("BEGIN")
        for sql, rows in tables:
            db.executemany(sql, rows)
        w1, c1 = time.perf_counter(), time.thread_time()
        db.execute("COMMIT")
        w2, c2 = time.perf_counter(), time.thread_time()
        cost["inserts_cpu"] += c1 - c0
        cost["inserts_wall"] += w1 - w0
        cost["commit_cpu"] += c2 - c1
        cost["commit_wall"] += w2 - w1

    # WAL frame: 24-byte header (page number first, big-endian), then the page
    frame = page + 24
    data = wal.read_bytes()[before:]
    written = collections.Counter(struct.unpack_from(">I", data, off)[0]
                                  for off in range(0, len(data) - frame + 1, frame))
    owner = {pageno: (name, kind)
             for name, pageno, kind in db.execute("SELECT name, pageno, pagetype FROM dbstat")}
    by_tree: collections.Counter[tuple[str, str]] = collections.Counter()
    for pageno, n in written.items():
        by_tree[owner.get(pageno, ("?", "?"))] += n
    db.close()

    commits = len(batches) - skip
    measured = commits * args.group
    frames = sum(by_tree.values())
    print(json.dumps({
        "messages": args.messages, "group": args.group, "page_size": page,
        "pages_per_commit": round(frames / commits), "pages_per_message": round(frames / measured, 1),
        "cpu_us_per_message": {k: round(v / measured * 1e6) for k, v in cost.items()},
        "btrees": [{"btree": name, "page": kind, "pages_per_commit": round(n / commits, 1),
                    "share": round(n / frames, 3)}
                   for (name, kind), n in by_tree.most_common(args.top)],
    }, indent=2))


if __name__ == "__main__":
    main()
