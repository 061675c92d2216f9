"""Benchmark: commit ▶ notification written to the subscriber's socket, under 1,000 Observations/s.

The node (store, subscription service, uvicorn for the websocket endpoint) runs in this
process; the subscribers run in a child process (a rest-hook HTTP receiver, or one
websocket client per subscription), so receiving costs no CPU here. Both processes use
``time.perf_counter()`` (CLOCK_MONOTONIC on Linux, shared by processes). A probe is one
Observation for patient ``probe`` that every subscription's filter matches; its commit
instant is taken when the store's writer signals the commit (``notifier.notify``). The
ingest load is ``--rate`` Observations/s for other patients, in 10 ms batches, through the
same writer.

For each channel (rest-hook, websocket) and each subscription count (1, 100, 1,000) it
sends a probe every ``--probe-interval`` s (at least N/1,000 s: one 1,000-way fan-out a
second) and reports, per probe, the latency to the first and the last of the N notifications, p50/p99,
as seen by the receiving process (``first_ms``/``last_ms``: includes the receivers' own
speed: one process reads all N sockets; it notes each message's arrival and parses after the
run; websocket subscribers are a minimal client, ``--ws-client websockets`` the library's, which
cost that process ~50 us a message on the node's two cores) and as seen by the sender
(``sender_side_ms``: the rest-hook's 2xx came back, or
the websocket frame was written to the socket).
``fan_out_cpu``: the node's CPU (user + system) in the matcher's hand-over to delivery, where a
fan-out renders and writes its notifications, per notification: the A/B figure on shared cores.
Baselines measured in the same run: one POST of a notification-sized Bundle to the same
receiver with our HTTP/1.1 client and with httpx (the floor a notification can reach), and
1,000 concurrent httpx POSTs (why rest-hooks do not use httpx). Targets (issue 5, this
2-core machine): p99 <= 5 ms for 1 subscriber, <= 50 ms for the last of 1,000.

    .venv/bin/python bench/subscriptions.py                    # ~1.5 min
    .venv/bin/python bench/subscriptions.py --seconds 30 --counts 1,1000 --db postgresql
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import multiprocessing as mp
import os
import platform
import socket
import sys
import tempfile
import time
from functools import partial
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import orjson  # noqa: E402

PG_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"


# ---- the subscriber side (child process) --------------------------------------------------

def _arrival(at: float, body: bytes) -> tuple[float, str, str, str] | None:
    b = orjson.loads(body)
    if b.get("resourceType") != "Bundle" or b.get("type") != "history":
        return None
    st = b["entry"][0]["resource"]
    events = st.get("notificationEvent") or []
    if st.get("type") != "event-notification" or not events:
        return None
    return at, st["subscription"]["reference"].rsplit("/", 1)[1], events[0]["focus"]["reference"], st["type"]


def _rest_child(conn: Any) -> None:
    from fhir_server.subscriptions.receiver import Receiver

    async def main() -> None:
        got: list[Any] = []
        r = Receiver(keep=False)
        r.on_receive = lambda at, body: got.append((at, body))  # parsed after the run, as the websockets'
        await r.start()
        gc.freeze()  # as the websocket clients' process
        conn.send(r.url)
        await asyncio.get_running_loop().run_in_executor(None, conn.recv)
        conn.send([a for a in (_arrival(at, body) for at, body in got) if a is not None])
        await r.stop()

    asyncio.run(main())


def _ws_child(conn: Any, url: str, tokens: list[tuple[str, str]], client: str = "raw") -> None:
    if client == "websockets":
        run: Any = _websockets_clients
    else:
        run = _raw_clients

    async def main() -> None:
        got: list[Any] = []
        ready, bound = asyncio.Event(), [0]
        closers = await run(url, tokens, got, ready, bound)
        await ready.wait()
        # the 1,000 clients stand for 1,000 machines: a full collection of this process (their
        # coroutines and sockets) is not a delay of the node's
        gc.freeze()
        conn.send("bound")
        await asyncio.get_running_loop().run_in_executor(None, conn.recv)
        conn.send([a for a in (_arrival(at, msg) for at, msg in got) if a is not None])
        for close in closers:
            close()

    asyncio.run(main())


async def _websockets_clients(url: str, tokens: list[tuple[str, str]], got: list[Any], ready: asyncio.Event,
                              bound: list[int]) -> list[Any]:
    """One ``websockets`` client per subscription (~50 us of this process a message)."""
    import websockets

    async def client(token: str) -> None:
        async with websockets.connect(url, max_queue=None) as ws:
            await ws.send(f"bind-with-token: {token}")
            await ws.recv()  # handshake
            bound[0] += 1
            if bound[0] == len(tokens):
                ready.set()
            while True:  # the arrival instant only; bytes, not str, and parsed after the run
                msg = await ws.recv(decode=False)
                got.append((time.perf_counter(), msg))

    tasks = []
    for i in range(0, len(tokens), 50):  # connect in waves: no accept-queue overflow
        tasks += [asyncio.create_task(client(t)) for _, t in tokens[i:i + 50]]
        await asyncio.sleep(0.05)
    return [t.cancel for t in tasks]


class _RawWs(asyncio.Protocol):
    """A minimal websocket client (RFC 6455) for the bench: a notification costs this process one
    ``data_received`` and a frame-header parse, so 1,000 of them on the node's two cores measure
    the node rather than the client library. Answers pings (uvicorn sends one every 20 s)."""

    def __init__(self, host: str, path: str, token: str, got: list[Any], on_bound: Any) -> None:
        self.request = (f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n").encode()
        self.token, self.got, self.on_bound = token, got, on_bound
        self.buf = b""
        self.upgraded = self.bound = False
        self.transport: Any = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        transport.write(self.request)

    def _send(self, opcode: int, payload: bytes) -> None:
        n = len(payload)  # a client frame is masked; a zero mask keeps the payload as it is
        header = bytes((0x80 | opcode, 0x80 | n)) if n < 126 else bytes((0x80 | opcode, 0xFE)) + n.to_bytes(2, "big")
        self.transport.write(header + b"\0\0\0\0" + payload)

    def data_received(self, data: bytes) -> None:
        at = time.perf_counter()
        buf = self.buf + data if self.buf else data
        if not self.upgraded:
            head, sep, buf = buf.partition(b"\r\n\r\n")
            if not sep:
                self.buf = head
                return
            assert head.startswith(b"HTTP/1.1 101"), head[:40]
            self.upgraded = True
            self._send(0x1, f"bind-with-token: {self.token}".encode())
        while len(buf) >= 2:
            opcode, n, i = buf[0] & 0x0F, buf[1] & 0x7F, 2
            if n == 126:
                n, i = int.from_bytes(buf[2:4], "big"), 4
            elif n == 127:
                n, i = int.from_bytes(buf[2:10], "big"), 10
            if len(buf) < i + n:
                break
            payload, buf = buf[i:i + n], buf[i + n:]
            if opcode == 0x9:
                self._send(0xA, payload)
            elif opcode == 0x1:
                if self.bound:
                    self.got.append((at, payload))  # the instant the frame's last byte arrived
                else:
                    self.bound = True  # the handshake Bundle
                    self.on_bound()
        self.buf = buf


async def _raw_clients(url: str, tokens: list[tuple[str, str]], got: list[Any], ready: asyncio.Event,
                       bound: list[int]) -> list[Any]:
    hostport, _, path = url.removeprefix("ws://").partition("/")
    host, _, port = hostport.partition(":")
    loop = asyncio.get_running_loop()

    def on_bound() -> None:
        bound[0] += 1
        if bound[0] == len(tokens):
            ready.set()

    transports = []
    for i in range(0, len(tokens), 50):  # connect in waves: no accept-queue overflow
        for _, token in tokens[i:i + 50]:
            tr, _ = await loop.create_connection(partial(_RawWs, hostport, "/" + path, token, got, on_bound),
                                                 host, int(port))
            transports.append(tr)
        await asyncio.sleep(0.05)
    return [t.close for t in transports]


# ---- the node side ------------------------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _obs(patient: str, value: float) -> dict[str, Any]:
    return {"resourceType": "Observation", "status": "final",
            "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                                      "code": "vital-signs"}]}],
            "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4", "display": "Heart rate"}]},
            "subject": {"reference": f"Patient/{patient}"}, "effectiveDateTime": "2026-11-28T10:00:00Z",
            "valueQuantity": {"value": value, "unit": "/min", "system": "http://unitsofmeasure.org", "code": "/min"}}


def _sub(i: int, channel: str, endpoint: str | None) -> dict[str, Any]:
    from fhir_server.subscriptions.model import CONTENT_EXT, FILTER_EXT
    from fhir_server.subscriptions.topics import TOPIC_BASE

    ch: dict[str, Any] = {"type": channel, "payload": "application/fhir+json",
                          "_payload": {"extension": [{"url": CONTENT_EXT, "valueCode": "full-resource"}]}}
    if endpoint:
        ch["endpoint"] = endpoint
    return {"resourceType": "Subscription", "id": f"{channel}-{i}", "status": "requested", "reason": "bench",
            "criteria": TOPIC_BASE + "observation", "channel": ch,
            "_criteria": {"extension": [{"url": FILTER_EXT, "valueString": "Observation?patient=Patient/probe"}]}}


def _pct(xs: list[float], q: float) -> float:
    if not xs:
        return float("nan")
    s = sorted(xs)
    return round(s[min(len(s) - 1, int(q * len(s)))], 3)


async def _wait_active(store: Any, n: int, timeout: float = 120) -> None:
    from sqlalchemy import func, select

    from fhir_server.storage import schema as t

    c = t.resource.c
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        # Active subscriptions, counted from the resource rows' current bodies.
        rows = await store.fetch(select(func.count()).select_from(t.resource).where(c.type == "Subscription"))
        if rows.scalar() >= n:
            from fhir_server.storage import loads
            v = t.resource_version.c
            bodies = await store.fetch(select(v.body).join(t.resource, c.vid == v.vid).where(c.type == "Subscription"))
            if sum(1 for (b,) in bodies if loads(b)["status"] == "active") >= n:
                return
        await asyncio.sleep(0.1)
    raise TimeoutError("subscriptions did not become active")


def _gc_settings(args: argparse.Namespace) -> Any:
    from gateway.settings import Settings

    values: dict[str, Any] = {"gc_freeze": args.gc != "off"}
    if args.gc_threshold:
        values["gc_thresholds"] = args.gc_threshold
    return Settings(**values)


async def run_case(args: argparse.Namespace, channel: str, count: int) -> dict[str, Any]:
    import uvicorn

    from fhir_server.storage import Store, WriteTx, make_engine, upgrade
    from fhir_server.subscriptions import SubscriptionService
    from fhir_server.subscriptions.ws_protocol import NODE_WS_CONFIG
    from gateway.gc_policy import GcPauses, apply_gc_policy, sample_loop

    cpus = os.sched_getaffinity(0)
    if args.pin:  # the node on the first CPU (threads started from here on inherit it)
        os.sched_setaffinity(0, {min(cpus)})
    tmp = tempfile.mkdtemp(prefix="vg-subs-")
    url = PG_URL if args.db == "postgresql" else f"sqlite+aiosqlite:///{tmp}/bench.db"
    engine = make_engine(url)
    await upgrade(engine)
    if args.db == "postgresql":
        from sqlalchemy import text
        async with engine.begin() as conn:
            await conn.execute(text("TRUNCATE resource, resource_version, change_log, consumer_cursor, "
                                    "subscription_event, idx_token, idx_string, idx_date, idx_reference, "
                                    "idx_quantity, idx_number RESTART IDENTITY"))
    store = Store(engine)
    await store.start()
    commits: list[tuple[int, float]] = []
    notify = store.notifier.notify

    def timed_notify(seq: int, entries: Any = ()) -> None:
        commits.append((seq, time.perf_counter()))
        notify(seq, entries)

    store.notifier.notify = timed_notify  # type: ignore[method-assign]
    port = _free_port()
    svc = SubscriptionService(store, base=f"http://127.0.0.1:{port}/fhir")
    await svc.start()
    written: dict[str, list[float]] = {}

    def delivered(_sub_id: str, events: list[Any], at: float) -> None:
        for e in events:
            written.setdefault(e.res_id, []).append(at)

    svc.delivery.on_delivered = delivered
    # the node's CPU (this thread's, user + system: the socket writes included) in the matcher's
    # hand-over to delivery: the fan-out pass that renders and writes (or queues) every notification
    fan_out_cpu: list[tuple[int, float]] = []
    hand_over = svc.matcher.on_events

    def timed_hand_over(events: dict[str, list[Any]]) -> None:
        c = time.thread_time()
        hand_over(events)
        fan_out_cpu.append((sum(map(len, events.values())), time.thread_time() - c))

    svc.matcher.on_events = timed_hand_over
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    server = None
    if channel == "rest-hook":
        proc = ctx.Process(target=_rest_child, args=(child,))
        proc.start()
        endpoint = parent.recv()
        if args.pin and proc.pid is not None:
            os.sched_setaffinity(proc.pid, {max(cpus)})
    else:
        from fastapi import FastAPI
        app = FastAPI()
        app.include_router(svc.router())
        # node: the node's websocket settings (gateway/app.py), frames written straight to the
        # transports, no per-message compression; asgi: uvicorn's defaults, every send through ASGI
        ws_config = NODE_WS_CONFIG if args.ws == "node" else {}
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, lifespan="off",
                                               log_level="warning", ws_max_queue=1024, **ws_config))
        server_task = asyncio.create_task(server.serve())
        while not server.started:
            await asyncio.sleep(0.01)
        endpoint = None
    # where ``vitalgate serve`` applies its collector policy (gateway/app.py): once the node is up,
    # before clients create their subscriptions and connect, so those stay in the collector's sight
    apply_gc_policy(_gc_settings(args))

    async def create(tx: WriteTx) -> None:
        for i in range(count):
            tx.put("Subscription", f"{channel}-{i}", _sub(i, channel, endpoint), method="PUT")

    await store.write(create)
    if channel == "websocket":
        tokens = [(f"{channel}-{i}", svc.hub.issue([f"{channel}-{i}"])[0]) for i in range(count)]
        proc = ctx.Process(target=_ws_child, args=(child, svc.websocket_url(svc.base), tokens, args.ws_client))
        proc.start()
        if args.pin and proc.pid is not None:
            os.sched_setaffinity(proc.pid, {max(cpus)})
        await asyncio.get_running_loop().run_in_executor(None, parent.recv)
    await _wait_active(store, count)
    pauses = GcPauses()

    stop = asyncio.Event()
    ingested = [0]

    async def ingest() -> None:
        # Like concurrent feeds: a batch every 10 ms whether or not the previous one committed.
        period, per = 0.01, max(1, int(args.rate * 0.01))
        n, next_at = 0, time.perf_counter()
        inflight: set[asyncio.Task[None]] = set()

        async def job(tx: WriteTx, batch: list[tuple[str, dict[str, Any]]]) -> None:
            for id_, res in batch:
                tx.put("Observation", id_, res, method="PUT")

        async def write(batch: list[tuple[str, dict[str, Any]]]) -> None:
            await store.write(lambda tx: job(tx, batch))
            ingested[0] += len(batch)

        while not stop.is_set():
            batch = [(f"load-{n + k}", _obs(f"load-{(n + k) % 50}", 70)) for k in range(per)]
            n += per
            if len(inflight) < 100:
                task = asyncio.create_task(write(batch))
                inflight.add(task)
                task.add_done_callback(inflight.discard)
            next_at += period
            await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
        await asyncio.gather(*inflight)

    probes: dict[str, int] = {}

    interval = max(args.probe_interval, count / 1000)  # 1,000 subscribers: one fan-out a second

    async def probe() -> None:
        i = 0
        while not stop.is_set():
            await asyncio.sleep(interval)
            pid = f"probe-{i}"
            i += 1

            async def job(tx: WriteTx, pid=pid, value=100 + i % 50) -> Any:
                return tx.put("Observation", pid, _obs("probe", value), method="PUT")

            w = await store.write(job)
            probes[pid] = w.written().seq

    load0 = os.getloadavg()[0]
    t0 = time.perf_counter()
    rss: list[tuple[float, float, int]] = []
    lag: list[float] = []
    loops = [asyncio.create_task(ingest()), asyncio.create_task(probe()),
             asyncio.create_task(sample_loop(stop, lag, rss, 0.01, max(1.0, args.seconds / 20)))]
    with pauses:
        if args.gc == "disabled":
            gc.disable()
        await asyncio.sleep(args.seconds)
        stop.set()
        await asyncio.gather(*loops)
        gc.enable()
    elapsed = time.perf_counter() - t0
    await asyncio.sleep(min(10.0, 2.0 + count / 200))  # let the last probes arrive
    parent.send("dump")
    arrivals = await asyncio.get_running_loop().run_in_executor(None, parent.recv)
    proc.join(10)

    commit_at = {}
    for pid, seq in probes.items():
        commit_at[pid] = next(at for s, at in commits if s >= seq)
    per_probe: dict[str, list[float]] = {}
    for at, _sub_id, focus, _ in arrivals:
        pid = focus.rsplit("/", 1)[1]
        if pid in commit_at:
            per_probe.setdefault(pid, []).append((at - commit_at[pid]) * 1000)
    complete = [v for v in per_probe.values() if len(v) >= count]
    first = [min(v) for v in complete]
    last = [max(v) for v in complete]
    sent = [[(at - commit_at[pid]) * 1000 for at in ats] for pid, ats in written.items()
            if pid in commit_at and len(ats) >= count]
    await svc.stop()
    if server is not None:
        server.should_exit = True
        await server_task
    await store.close()
    os.sched_setaffinity(0, cpus)
    return {"channel": channel, "subscriptions": count, "probes": len(probes), "complete_probes": len(complete),
            "ingest_obs_per_s": round(ingested[0] / elapsed),
            "first_ms": {"p50": _pct(first, .5), "p99": _pct(first, .99)},
            "last_ms": {"p50": _pct(last, .5), "p99": _pct(last, .99), "max": _pct(last, 1.0)},
            "sender_side_ms": {"first_p50": _pct([min(v) for v in sent], .5),
                               "first_p99": _pct([min(v) for v in sent], .99),
                               "last_p50": _pct([max(v) for v in sent], .5),
                               "last_p99": _pct([max(v) for v in sent], .99)},
            "fan_out_cpu": {"us_per_notification": round(sum(c for _, c in fan_out_cpu) * 1e6
                                                         / max(1, sum(n for n, _ in fan_out_cpu)), 2),
                            "ms_per_pass_p50": _pct([c * 1000 for n, c in fan_out_cpu if n >= count], .5)},
            "loop_lag_ms": {"p50": _pct(lag, .5), "p99": _pct(lag, .99), "max": _pct(lag, 1.0)},
            "gc_pauses": pauses.summary(args.seconds),
            "rss_mib": {"start": rss[0][1], "end": rss[-1][1], "max": max(r[1] for r in rss),
                        # [s, RSS MiB, Python's allocated blocks in thousands: the heap without SQLite's cache]
                        "timeline": rss},
            "load_avg_1m": [round(load0, 2), round(os.getloadavg()[0], 2)]}


async def baseline(n: int = 300) -> dict[str, Any]:
    """One POST of a notification-sized Bundle, our client vs httpx; 1,000 concurrent httpx POSTs."""
    import httpx

    from fhir_server.subscriptions.http1 import Http1Client

    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=_rest_child, args=(child,))
    proc.start()
    url = parent.recv()
    body = orjson.dumps({"resourceType": "Bundle", "type": "history", "entry": [{"resource": _obs("x", 1)}] * 2})
    headers = {"Content-Type": "application/fhir+json"}
    ours, theirs = Http1Client(8), httpx.AsyncClient()
    out: dict[str, Any] = {}
    for name, post in (("http1_post_ms", lambda: ours.post(url, body, headers, 5)),
                       ("httpx_post_ms", lambda: theirs.post(url, content=body, headers=headers))):
        xs = []
        for _ in range(n):
            t = time.perf_counter()
            await post()
            xs.append((time.perf_counter() - t) * 1000)
        out[name] = {"p50": _pct(xs, .5), "p99": _pct(xs, .99)}
    t = time.perf_counter()
    await asyncio.gather(*(theirs.post(url, content=body, headers=headers, timeout=60) for _ in range(1000)))
    out["httpx_1000_concurrent_ms"] = round((time.perf_counter() - t) * 1000, 1)
    t = time.perf_counter()
    await asyncio.gather(*(ours.post(url, body, headers, 60) for _ in range(1000)))
    out["http1_1000_concurrent_ms"] = round((time.perf_counter() - t) * 1000, 1)
    await theirs.aclose()
    await ours.close()
    parent.send("dump")
    parent.recv()
    proc.join(10)
    return out


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--db", choices=("sqlite", "postgresql"), default="sqlite")
    ap.add_argument("--seconds", type=float, default=10.0, help="measurement time per case")
    ap.add_argument("--rate", type=int, default=1000, help="background Observations/s")
    ap.add_argument("--probe-interval", type=float, default=0.1,
                    help="seconds between matching Observations (at least N/1000 s for N subscriptions)")
    ap.add_argument("--counts", default="1,100,1000")
    ap.add_argument("--channels", default="rest-hook,websocket")
    ap.add_argument("--ws", choices=("node", "asgi"), default="node",
                    help="node (default): uvicorn as vitalgate serve runs it (NODE_WS_CONFIG); asgi: uvicorn's "
                         "defaults (permessage-deflate, every frame through the ASGI send)")
    ap.add_argument("--ws-client", choices=("raw", "websockets"), default="raw",
                    help="raw (default): a minimal websocket client per subscription (one data_received a "
                         "notification); websockets: the websockets library's client (~50 us a message; the "
                         "figures before 29 November 06:40 UTC)")
    ap.add_argument("--pin", action="store_true",
                    help="node on the first CPU, receiving process on the last: the receivers stand for other "
                         "machines, and on shared cores each write wakes them onto the node's CPU (wake-affine), "
                         "~500 involuntary switches of the node in a 1,000-socket pass")
    ap.add_argument("--gc", choices=("node", "off", "disabled"), default="node",
                    help="node (default): the collector policy of vitalgate serve (gateway/gc_policy.py, "
                         "VITALGATE_GC_* settings) once the node is up; off: no freeze (the figures before "
                         "29 November); disabled: as node, then no collection at all while measuring (what "
                         "the best thresholds could gain at most)")
    ap.add_argument("--gc-threshold", default=None,
                    help="e.g. 700,10,100: instead of the node's VITALGATE_GC_THRESHOLDS")
    args = ap.parse_args()
    import logging
    logging.basicConfig(level=logging.ERROR)
    results = {"machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "db": args.db,
                           "note": "2-core VM; receivers in a child process",
                           "gc": {"node": "vitalgate serve's policy (gateway/gc_policy.py) once the node is up, "
                                          "before subscriptions and sockets",
                                  "off": "not frozen (unlike the node)",
                                  "disabled": "frozen as the node, then disabled while measuring"}[args.gc],
                           "gc_threshold": _gc_settings(args).gc_thresholds,
                           "ws_client": args.ws_client, "pinned": args.pin,
                           "websocket": ("uvicorn with NODE_WS_CONFIG, as vitalgate serve" if args.ws == "node"
                                         else "uvicorn defaults (ASGI send, permessage-deflate)")},
               "targets": {"p99_ms_1_subscriber": 5, "p99_ms_last_of_1000": 50},
               "baseline": await baseline(), "cases": []}
    for channel in args.channels.split(","):
        for count in (int(c) for c in args.counts.split(",")):
            results["cases"].append(await run_case(args, channel, count))
            print(json.dumps(results["cases"][-1]), file=sys.stderr)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
