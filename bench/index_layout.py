"""The search-index tables' own layout on SQLite: WAL pages and CPU a group commit, and query plans.

    .venv/bin/python bench/index_layout.py                  # replay: every layout, 3 rounds
    .venv/bin/python bench/index_layout.py --plans          # EXPLAIN QUERY PLAN of the search shapes

Each ``idx_*`` table is today a rowid table plus two indexes: the search key ``(param, key,
rid)`` and one by ``rid`` (``idx_date``: ``(rid, param, lo, hi)``, covering). Every index row
is therefore three b-tree inserts. The layouts compared (same rows, same store pragmas):

- ``current``: the migrated schema as it is.
- ``no_date_cover``: ``current`` without ``ix_date_rid_cover`` (what that index alone costs;
  not a valid layout: the date probes by rid use it).
- ``rid_clustered``: ``WITHOUT ROWID``, primary key ``(rid, param, pk)`` with ``pk`` the row's
  ordinal within its resource (``idx_date``: ``(rid, param, lo, pk)``); the key index as today;
  no rid index, no date cover (the table is the rid index, and covers the date columns). Two
  b-trees a row, the wide one appending.
- ``rid_clustered_ridpk``: the same with ``(rid, pk)`` keys (narrower interior cells) but for
  ``idx_date``.
- ``key_clustered``: ``WITHOUT ROWID`` clustered on the search key ``(param, key, rid, pk)``
  (NULL keys written as ''), plus the rid index (``idx_date``: the covering one).
- ``int_params``: ``current`` with the ``"<Type>.<name>"`` params stored as small integers
  (series end-time keys stay text): the narrower rows alone.
- ``rid_clustered_int``: both.

The replay is ``bench/wal_btrees.py``'s (the ceiling's rows of ``bench/mllp_ingest.py``'s
messages bound as tuples like the store's flush, groups of 8, the second half measured, no
checkpoints); the layouts take turns each round, and the CPU figures are the median (and min)
of the rounds: on shared cores a round's CPU moves by up to 30 %, pages are deterministic.
The integer layouts replay text params and encode them inside the timed inserts, as a store
would have to.

``--plans`` loads the same rows into each text layout (no ``ANALYZE``, as the store runs) and
prints the plan and median time of the statements the REST layer runs (``build_select``,
``build_count``, ``build_lastn``, ``fastread``'s SQL, the writer's delete by rid), compiled by
the real search code; a statement is stopped after ``--limit-ms``.

Prints one JSON object.
"""

from __future__ import annotations

import argparse
import collections
import json
import sqlite3
import statistics
import struct
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mllp_ingest import _ceiling_rows, _mapped, _replay, _replay_db, message  # noqa: E402

Batch = list[tuple[str, list[dict[str, Any]]]]

# kind: (value columns with their types, the search key's columns after param)
_KINDS: dict[str, tuple[tuple[tuple[str, str], ...], tuple[str, ...]]] = {
    "token": ((("system", "VARCHAR"), ("code", "VARCHAR"), ("text", "VARCHAR")), ("code",)),
    "string": ((("value", "VARCHAR NOT NULL"), ("exact", "VARCHAR NOT NULL")), ("value",)),
    "date": ((("lo", "BIGINT NOT NULL"), ("hi", "BIGINT NOT NULL")), ("lo",)),
    "reference": ((("target_type", "VARCHAR"), ("target_id", "VARCHAR"), ("url", "VARCHAR")), ("target_id",)),
    "quantity": ((("system", "VARCHAR"), ("code", "VARCHAR"), ("value", "FLOAT NOT NULL"),
                  ("canon_code", "VARCHAR"), ("canon_value", "FLOAT")), ("canon_code", "canon_value")),
    "number": ((("value", "FLOAT NOT NULL"),), ("value",)),
}
_KEY_INDEX = {"token": "ix_token_code", "string": "ix_string_value", "date": "ix_date_lo",
              "reference": "ix_reference_target", "quantity": "ix_quantity_value", "number": "ix_number_value"}


def _ddl(layout: str) -> list[str]:
    """DDL replacing every ``idx_*`` table (empty list: keep the migrated schema)."""
    if layout in ("current", "int_params"):
        return []
    if layout == "no_date_cover":
        return ["DROP INDEX ix_date_rid_cover"]
    out = []
    for kind, (cols, key) in _KINDS.items():
        name = f"idx_{kind}"
        cdefs = ", ".join(f"{c} {typ}" for c, typ in cols)
        out.append(f"DROP TABLE {name}")
        if layout.startswith("rid_clustered"):
            param = "param" if layout.endswith("_int") else "param VARCHAR(96)"
            # idx_date: lo in the key, so max(lo) of one rid and param is one seek, not a walk of ix_date_lo
            pkey = "rid, param, lo, pk" if kind == "date" else (
                "rid, pk" if layout == "rid_clustered_ridpk" else "rid, param, pk")
            out.append(f"CREATE TABLE {name} (rid INTEGER NOT NULL, {param} NOT NULL, pk INTEGER NOT NULL, "
                       f"{cdefs}, PRIMARY KEY ({pkey})) WITHOUT ROWID")
            out.append(f"CREATE INDEX {_KEY_INDEX[kind]} ON {name} (param, {', '.join(key)}, rid)")
        elif layout == "key_clustered":
            # primary key columns are NOT NULL in a WITHOUT ROWID table: NULL keys become ''
            cdefs = ", ".join(f"{c} {typ}{' NOT NULL' if c in key and 'NOT' not in typ else ''}" for c, typ in cols)
            out.append(f"CREATE TABLE {name} (rid INTEGER NOT NULL, param VARCHAR(96) NOT NULL, pk INTEGER NOT NULL, "
                       f"{cdefs}, PRIMARY KEY (param, {', '.join(key)}, rid, pk)) WITHOUT ROWID")
            rid_cols = "rid, param, lo, hi" if kind == "date" else "rid"
            out.append(f"CREATE INDEX ix_{kind}_rid ON {name} ({rid_cols})")
        else:
            raise ValueError(layout)
    return out


def _rows_for(layout: str, batches: list[Batch], codes: dict[str, int]) -> list[Batch]:
    """The same rows for ``layout``: a ``pk`` ordinal within each resource where the table
    has no rowid, registry params as integers where asked, NULL keys as '' when they cluster."""
    ordinal = layout.startswith(("rid_clustered", "key_clustered"))
    int_params = layout.endswith("int_params") or layout.endswith("_int")
    if not (ordinal or int_params):
        return batches
    out: list[Batch] = []
    for batch in batches:
        new: Batch = []
        for sql, rows in batch:
            table = sql.split()[2]
            if not table.startswith("idx_"):
                new.append((sql, rows))
                continue
            kind = table[4:]
            fixed = []
            seen: collections.Counter[int] = collections.Counter()
            for r in rows:
                r = dict(r)
                if ordinal:
                    r["pk"] = seen[r["rid"]]
                    seen[r["rid"]] += 1
                if int_params and not r["param"].startswith("Obs.pce|"):
                    r["param"] = codes.setdefault(r["param"], len(codes) + 1)
                if layout == "key_clustered":
                    for c in _KINDS[kind][1]:
                        if r.get(c) is None:
                            r[c] = ""
                fixed.append(r)
            cols = sorted({c for r in fixed for c in r})
            new.append((f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join(':' + c for c in cols)})",
                        [{c: r.get(c) for c in cols} for r in fixed]))
        out.append(new)
    return out


LAYOUTS = ("current", "no_date_cover", "rid_clustered", "rid_clustered_ridpk", "key_clustered", "int_params",
           "rid_clustered_int")


def _positional(batches: list[Batch]) -> list[list[tuple[str, list[tuple[Any, ...]]]]]:
    """Named parameters as ``?`` and tuples, as the store's flush binds them."""
    out = []
    for batch in batches:
        new = []
        for sql, rows in batch:
            cols = list(rows[0])
            head = sql.split(" VALUES ")[0]
            new.append((f"{head} VALUES ({', '.join('?' * len(cols))})", [tuple(r[c] for c in cols) for r in rows]))
        out.append(new)
    return out


def _db(layout: str, extra: tuple[str, ...] = ()) -> tuple[Any, Path]:
    db, path = _replay_db(extra)
    for stmt in _ddl(layout):
        db.execute(stmt)
    return db, path


def _encoder(codes: dict[str, int]) -> Callable[[str, list[tuple[Any, ...]]], list[tuple[Any, ...]]]:
    """What a store writing integer params pays per row: the param looked up, the tuple rebuilt."""
    get = codes.get

    def encode(sql: str, rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
        if not sql.startswith("INSERT INTO idx_"):
            return rows
        i = sql.split("(", 1)[1].split(")", 1)[0].split(", ").index("param")
        return [(*r[:i], get(r[i], r[i]), *r[i + 1:]) for r in rows]
    return encode


def replay_once(layout: str, batches: list[Any], codes: dict[str, int] | None = None) -> dict[str, Any]:
    """One layout's replay: WAL pages a commit by b-tree and CPU a message (second half).
    ``codes``: the rows hold text params, encoded inside the timed inserts (as a store would)."""
    encode = _encoder(codes) if codes else None
    db, path = _db(layout, ("wal_autocheckpoint=0",))
    page = db.execute("PRAGMA page_size").fetchone()[0]
    wal = Path(f"{path}-wal")
    skip = len(batches) // 2
    for tables in batches[:skip]:
        db.execute("BEGIN")
        for sql, rows in tables:
            db.executemany(sql, encode(sql, rows) if encode else rows)
        db.execute("COMMIT")
    before = wal.stat().st_size
    inserts = commit = 0.0
    for tables in batches[skip:]:
        c0 = time.thread_time()
        db.execute("BEGIN")
        for sql, rows in tables:
            db.executemany(sql, encode(sql, rows) if encode else rows)
        c1 = time.thread_time()
        db.execute("COMMIT")
        c2 = time.thread_time()
        inserts += c1 - c0
        commit += c2 - c1
    frame = page + 24  # WAL frame: 24-byte header (page number first), then the page
    data = wal.read_bytes()[before:]
    written = collections.Counter(struct.unpack_from(">I", data, off)[0]
                                  for off in range(0, len(data) - frame + 1, frame))
    owner = {pageno: name for name, pageno in db.execute("SELECT name, pageno FROM dbstat")}
    by_tree: collections.Counter[str] = collections.Counter()
    for pageno, n in written.items():
        by_tree[owner.get(pageno, "?")] += n
    size = db.execute("PRAGMA page_count").fetchone()[0]
    db.close()
    commits = len(batches) - skip
    return {"pages": sum(by_tree.values()) / commits, "by_tree": {k: v / commits for k, v in by_tree.items()},
            "inserts_us": inserts, "commit_us": commit, "messages": commits, "db_pages": size}


def replay(args: argparse.Namespace) -> dict[str, Any]:
    msgs = [message(i % 8, i, "p") for i in range(args.messages)]
    base = _ceiling_rows(msgs, _mapped(msgs), args.group)
    codes: dict[str, int] = {}
    for name in args.layouts:
        _rows_for(name, base, codes)  # the codes
    # integer layouts replay their text twin's rows and encode them in the timed part
    rows = {name: _positional(_rows_for(name.replace("int_params", "current").replace("_int", ""), base, {}))
            for name in args.layouts}
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in args.layouts}
    for _ in range(args.rounds):
        for name in args.layouts:
            runs[name].append(replay_once(name, rows[name], codes if name.endswith(("_int", "int_params")) else None))
    out: dict[str, Any] = {"messages": args.messages, "group": args.group, "rounds": args.rounds, "layouts": {}}
    for name, rs in runs.items():
        n = rs[0]["messages"] * args.group
        ins = [r["inserts_us"] / n * 1e6 for r in rs]
        com = [r["commit_us"] / n * 1e6 for r in rs]
        tot = [a + b for a, b in zip(ins, com, strict=True)]
        idx = {k: round(v, 1) for k, v in sorted(rs[0]["by_tree"].items(), key=lambda kv: -kv[1])
               if k.startswith(("idx_", "ix_date", "ix_token", "ix_quantity", "ix_reference", "ix_string",
                                "ix_number"))}
        out["layouts"][name] = {
            "pages_per_commit": round(rs[0]["pages"], 1),
            "index_pages_per_commit": round(sum(idx.values()), 1),
            "inserts_cpu_us_per_message": round(statistics.median(ins)),
            "commit_cpu_us_per_message": round(statistics.median(com)),
            "inserts_plus_commit_us_per_message": round(statistics.median(tot)),
            "inserts_plus_commit_us_min": round(min(tot)),
            "all_runs_total_us": [round(x) for x in tot],
            "db_pages_after": rs[0]["db_pages"],
            "index_btrees": idx,
        }
    cur = out["layouts"].get("current")
    if cur:
        for v in out["layouts"].values():
            v["pages_vs_current"] = round(v["pages_per_commit"] / cur["pages_per_commit"] - 1, 3)
            v["cpu_vs_current"] = round(v["inserts_plus_commit_us_per_message"]
                                        / cur["inserts_plus_commit_us_per_message"] - 1, 3)
    return out


# ---- query plans ------------------------------------------------------------------------

def _statements(batches: list[Batch]) -> list[tuple[str, Callable[[Any], tuple[str, tuple[Any, ...]]]]]:
    """(name, build(engine) -> (SQL, params)) for the search shapes, from the real search code."""
    from sqlalchemy import create_engine

    from fhir_server.core import fastread
    from fhir_server.search import TokenValue, build_count, build_lastn, build_select, extract_index, parse_search
    from fhir_server.search.composite import END_PREFIX, composite_key, composite_keys, end_param

    rows = [r for b in batches for sql, rs in b if "INTO resource " in sql for r in rs]
    patient = next(r["id"] for r in rows if r["type"] == "Patient")
    obs = [r for r in rows if r["type"] == "Observation"]
    engine = create_engine("sqlite://")

    def core(stmt: Any) -> tuple[str, tuple[Any, ...]]:
        c = stmt.compile(engine, compile_kwargs={"literal_binds": True})
        return str(c), ()

    def raw(stmt: tuple[str, Any]) -> tuple[str, tuple[Any, ...]]:
        return stmt[0], tuple(stmt[1])

    last = max(r["lo"] for b in batches for sql, rs in b if "idx_date" in sql
               for r in rs if r["param"] == "Observation.date")
    since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(last // 1_000_000 - 120))
    loinc = ("http://loinc.org", "8867-4")
    # the series of the patient's heart rates: the series of their whole code (LOINC, MDC and the
    # sender's code), which series_member names for the LOINC coding (the REST layer reads it)
    hr = next(b for b in (orjson.loads(r["body"]) for bt in batches for sql, rs in bt
                          if "INTO resource_version " in sql for r in rs)
              if b["resourceType"] == "Observation" and b.get("subject", {}).get("reference") == f"Patient/{patient}"
              and {"system": loinc[0], "code": loinc[1]}.items() <= next(iter(b["code"]["coding"])).items())
    series = next(r["param"] for r in extract_index("Observation", hr)["date"] if r["param"].startswith(END_PREFIX))

    def search(params: list[tuple[str, str]], count: bool = False) -> Callable[[Any], tuple[str, tuple[Any, ...]]]:
        def build(_: Any) -> tuple[str, tuple[Any, ...]]:
            q = parse_search("Observation", params, strict=True)
            if composite_keys(list(q.clauses)) is not None:
                q = replace(q, series=(series,))
            return core(build_count(q) if count else build_select(q))
        return build

    ident = obs[len(obs) // 2]["id"]
    return [
        ("patient&code&date=ge (REST search bench)", search(
            [("patient", patient), ("code", "|".join(loinc)), ("date", f"ge{since}"), ("_count", "20")])),
        ("patient&code", search([("patient", patient), ("code", "|".join(loinc)), ("_count", "20")])),
        ("code (streams ix_token_code, first row by pk)", search([("code", "|".join(loinc)), ("_count", "20")])),
        ("code&_sort=-date", search([("code", "|".join(loinc)), ("_sort", "-date"), ("_count", "20")])),
        ("subject&_sort=code", search([("subject", f"Patient/{patient}"), ("_sort", "code"), ("_count", "20")])),
        ("subject&_sort=-value-quantity", search(
            [("subject", f"Patient/{patient}"), ("_sort", "-value-quantity"), ("_count", "20")])),
        ("subject&status", search([("subject", f"Patient/{patient}"), ("status", "preliminary"), ("_count", "20")])),
        ("patient&date=ge", search([("patient", patient), ("date", f"ge{since}"), ("_count", "20")])),
        ("value-quantity=gt", search([("value-quantity", "gt100|http://unitsofmeasure.org|/min"), ("_count", "20")])),
        ("code:text", search([("code:text", "heart"), ("_count", "20")])),
        ("_id", search([("_id", ident)])),
        ("count code&date=ge", search([("code", "|".join(loinc)), ("date", f"ge{since}")], count=True)),
        ("$lastn by code", lambda _: core(build_lastn(("Patient", patient), [], [TokenValue(*loinc)], 1,
                                                      {end_param(composite_key(patient, *loinc)): [series]}))),
        ("$lastn by category", lambda _: core(build_lastn(
            ("Patient", patient), [TokenValue(None, "vital-signs")], [], 1))),
        ("fastread $lastn of series", lambda _: raw(fastread.lastn_of_series([series], [], 1))),
        ("fastread series search ge", lambda _: (fastread.series_search_sql("ge"),
                                                (series, last - 120_000_000, 10**12, False,
                                                 last - 120_000_000, last - 120_000_000, 21, 0))),
        ("writer: delete stale rows by rid", lambda _: ("DELETE FROM idx_token WHERE rid = ?", (obs[5]["rid"],))),
        ("probe: date by rid (sort key)", lambda _: (
            "SELECT max(x.lo) FROM idx_date x WHERE x.rid = ? AND x.param = 'Observation.date'", (obs[5]["rid"],))),
    ]


def plans(args: argparse.Namespace) -> dict[str, Any]:
    msgs = [message(i % 8, i, "p") for i in range(args.messages)]
    base = _ceiling_rows(msgs, _mapped(msgs), args.group)
    stmts = _statements(base)
    out: dict[str, Any] = {"messages": args.messages, "layouts": {}}
    for name in args.layouts:
        if name.endswith(("_int", "int_params")):
            continue  # the search code would need the param codes: plans as the text layouts
        db, _ = _db(name)
        _replay(db, _rows_for(name, base, {}))
        res = {}
        for label, build in stmts:
            sql, params = build(None)
            plan = [r[-1] for r in db.execute("EXPLAIN QUERY PLAN " + sql, params)]
            times = []
            for _ in range(args.repeat):
                db.execute("SAVEPOINT p")  # the delete is rolled back
                t0 = time.perf_counter()
                # a plan that walks a whole index is stopped after --limit-ms
                db.set_progress_handler(lambda t0=t0: time.perf_counter() - t0 > args.limit_ms / 1e3, 10_000)
                try:
                    db.execute(sql, params).fetchall()
                except sqlite3.OperationalError:  # interrupted
                    times.append(float("inf"))
                else:
                    times.append((time.perf_counter() - t0) * 1e3)
                db.set_progress_handler(None, 0)
                db.execute("ROLLBACK TO p")
                db.execute("RELEASE p")
                if times[-1] == float("inf"):
                    break
            med = statistics.median(times)
            res[label] = {"median_ms": round(med, 3) if med != float("inf") else f">{args.limit_ms}",
                          "plan": plan}
        db.close()
        out["layouts"][name] = res
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--messages", type=int, default=2000)
    p.add_argument("--group", type=int, default=8, help="messages a commit (the bench's 8 senders: 8)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--layouts", nargs="+", default=list(LAYOUTS), choices=LAYOUTS)
    p.add_argument("--plans", action="store_true", help="query plans and times instead of the replay")
    p.add_argument("--repeat", type=int, default=30, help="--plans: runs of each statement")
    p.add_argument("--limit-ms", type=float, default=1000, help="--plans: a statement is stopped after this")
    args = p.parse_args()
    print(json.dumps(plans(args) if args.plans else replay(args), indent=1))


if __name__ == "__main__":
    main()
