"""Alert latency under load, alarm burden on a stable population, and detection of scripted
deteriorations: prints one JSON object.

    .venv/bin/python bench/alert_latency.py                        # defaults below (about 5 minutes)
    .venv/bin/python bench/alert_latency.py --duration 20 --stable-beds 20 --detect-beds 3   # smoke run
    .venv/bin/python bench/alert_latency.py --rates 1000 5000 --duration 120 --stable-minutes 120
    .venv/bin/python bench/alert_latency.py --offline                # simulations only, simulated time
    .venv/bin/python bench/alert_latency.py --offline --stable-beds 0 --ramps 30   # detection only, < 1 min

Phases (machine: 2 cores; the load generator shares them with the node):

- ``latency``: the node runs as its own process (``python -m gateway serve``: MLLP listener, store,
  alerting consumer with the ``icu-limits`` rule set and the shipped model) on a fresh SQLite file.
  ``bench/loadgen.py`` sends one 10-numeric ORU^R01 per bed per second over MLLP (100 beds = about
  1,000 Observations/s; 500 beds = 5,000), over up to 100 connections, one frame in flight each.
  Every other bed has an acute event at a staggered time (``acute_events``: a deep desaturation
  or a hypotension) so alerts open during the run.  For
  every alert (first DetectedIssue version): latency = its commit (the change-log time stamp of the
  transaction that wrote it) minus the send time of the frame carrying its newest evidence
  Observation (the frame that made the condition true after its persistence window); also from that
  Observation's own commit, which is the alerting consumer's share of the budget.  Baseline in
  the same run: the MLLP ACK latency (frame sent -> data committed -> ACK back) at the same load
  on the ingest path alone (``python -m gateway.mllp``, no alerting), and with alerting running.
  ``alert_notified_ms``: before the load the bench subscribes to the shipped ``detected-issue``
  topic over the **websocket** channel (the dashboard's; ``full-resource``, no filter: every
  alert), with a minimal websocket client (``bench.subscriptions``' raw RFC 6455 client) in a
  child process, so receiving shares no event loop with the load generator.  For every alert:
  the instant the last byte of the first notification carrying its version 1 arrived (the
  child's ``time.perf_counter()``, the same monotonic clock across processes, mapped to wall
  time) minus the send time of the same triggering frame as ``alert_committed_ms``; also from
  the alert's commit (``alert_notified_after_commit_ms``: the subscription path's share).
- ``burden``: the engine alone, faster than real time, on ``--stable-beds`` stable patients for
  ``--stable-minutes`` simulated minutes at 1 Hz (the same physiology model): alerts per bed-hour,
  for ``icu-limits`` and for ``news2-ward`` (ACVPU "alert" and air entered at admission).
- ``detection``: the engine alone on ``--detect-beds`` beds per scripted deterioration (sepsis,
  respiratory failure, hypotension), scripted start after 10 minutes of baseline, with an acute
  (30 s) and a gradual (300 s) ramp (``--ramps``).  The onset the target is measured from is the
  **clinical onset**: the first second at which the noise-free physiology of a parameter that was
  normal at the scripted start leaves its normal band (NEWS2 sub-score 0), independent of the rule
  set and of monitor noise.  Also reported: share within 60 s of the scripted start (the ramp
  begins; values stay normal for a while) and of the first value past the rule set's own threshold.
  ``--offline`` runs only these two simulations: simulated time, no node, no network, seconds to
  a few minutes (``--stable-beds 0`` skips the burden phase: a detection-only run in under a minute).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.loadgen import NUMERICS, LoadGenerator  # noqa: E402
from fhir_server.storage import Store, loads, make_engine  # noqa: E402
from gateway.settings import Settings  # noqa: E402

SCENARIOS = ("sepsis", "respiratory-failure", "hypotension")


def pct(values: list[float]) -> dict[str, float | int | None]:
    ordered = sorted(values)
    if not ordered:
        return {"n": 0, "p50": None, "p99": None, "max": None}
    at = lambda q: round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 2)  # noqa: E731
    return {"n": len(ordered), "p50": at(0.5), "p99": at(0.99), "max": round(ordered[-1], 2),
            "mean": round(statistics.fmean(ordered), 2)}


# -- latency under load ---------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def wait_port(port: int, node: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if node.poll() is not None:
            raise RuntimeError(f"node exited with {node.returncode}; see its log in the bench directory")
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return
        except OSError:
            await asyncio.sleep(0.2)
    raise RuntimeError(f"node did not open MLLP port {port}")


def acute_events(beds: int, duration: float) -> dict[int, tuple[float, dict[str, float]]]:
    """Every other bed has an acute event at a staggered second: a deep desaturation (SpO2 82, the
    high-severity limit, fires on its first frame) or a hypotension (systolic 84, moderate, fires on
    the frame 15 s later, after its persistence window)."""
    span = max(1.0, duration - 25.0)
    return {bed: (5.0 + span * ((bed * 37) % beds) / beds, {"spo2": 82.0} if bed % 4 == 0 else {"sbp": 84.0})
            for bed in range(0, beds, 2)}


# -- the alert subscriber (child process) -----------------------------------------------------
def _subscriber_child(conn: Any, url: str, token: str) -> None:
    """One websocket bound to the alert subscription; sends back (perf_counter, frame) pairs."""
    from bench.subscriptions import _raw_clients

    async def main() -> None:
        got: list[tuple[float, bytes]] = []
        ready = asyncio.Event()
        closers = await _raw_clients(url, [("alerts", token)], got, ready, [0])
        await asyncio.wait_for(ready.wait(), 30)
        conn.send("bound")
        await asyncio.get_running_loop().run_in_executor(None, conn.recv)
        conn.send(got)
        for close in closers:
            close()

    asyncio.run(main())


class AlertSubscriber:
    """A websocket subscription to every alert (``detected-issue`` topic) of a running node."""

    def __init__(self) -> None:
        self.proc: Any = None
        self.conn: Any = None

    async def start(self, http_port: int) -> None:
        import httpx

        from fhir_server.subscriptions.model import CONTENT_EXT
        from fhir_server.subscriptions.topics import TOPIC_BASE

        sub = {"resourceType": "Subscription", "status": "requested", "reason": "alert latency bench",
               "criteria": TOPIC_BASE + "detected-issue",
               "channel": {"type": "websocket", "payload": "application/fhir+json",
                           "_payload": {"extension": [{"url": CONTENT_EXT, "valueCode": "full-resource"}]}}}
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{http_port}/fhir/", timeout=30,
                                     headers={"content-type": "application/fhir+json"}) as client:
            r = await client.post("Subscription", json=sub)
            r.raise_for_status()
            r = await client.post(f"Subscription/{r.json()['id']}/$get-ws-binding-token")
            r.raise_for_status()
        params = {p["name"]: p for p in r.json()["parameter"]}
        ctx = mp.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_subscriber_child, daemon=True,
                                args=(child, params["websocket-url"]["valueUrl"], params["token"]["valueString"]))
        self.proc.start()
        if await asyncio.get_running_loop().run_in_executor(None, self.conn.recv) != "bound":
            raise RuntimeError("the alert subscriber did not bind")

    async def stop(self) -> dict[str, float]:
        """DetectedIssue id -> wall time its version 1 was fully received."""
        if self.proc is None:
            return {}
        self.conn.send("stop")
        got = await asyncio.get_running_loop().run_in_executor(None, self.conn.recv)
        self.proc.join(10)
        to_wall = time.time() - time.perf_counter()  # perf_counter is CLOCK_MONOTONIC in both processes
        first: dict[str, float] = {}
        for at, frame in got:
            bundle = orjson.loads(frame)
            if bundle["entry"][0]["resource"].get("type") != "event-notification":
                continue
            for entry in bundle["entry"][1:]:
                if entry.get("response", {}).get("etag") == 'W/"1"':
                    first.setdefault(entry["fullUrl"].rsplit("/", 1)[1], at + to_wall)
        return first


async def load_node(command: list[str], name: str, rate: int, duration: float, tmp: Path,
                    events: dict[int, tuple[float, dict[str, float]]] | None,
                    subscriber: AlertSubscriber | None = None) -> tuple[str, Any]:
    """Start a node process on a fresh SQLite file, drive it with the load generator, stop it."""
    beds = max(1, round(rate / NUMERICS))
    db_url = f"sqlite+aiosqlite:///{tmp}/{name}-{rate}.db"
    mllp, http = free_port(), free_port()
    env = {**os.environ, "VITALGATE_DATABASE_URL": db_url, "VITALGATE_HTTP_PORT": str(http),
           "VITALGATE_MLLP_PORT": str(mllp), "VITALGATE_ALERT_RULESET": "icu-limits",
           "VITALGATE_MODEL_DIR": str(tmp / "models"), "VITALGATE_LOG_LEVEL": "WARNING"}
    log_path = tmp / f"{name}-{rate}.log"  # a file, not a pipe: an undrained pipe would block the node
    log_file = log_path.open("wb")
    node = subprocess.Popen([sys.executable, "-m", *command, *(["--port", str(mllp)] if command == ["gateway.mllp"]
                                                             else [])],
                            cwd=tmp, env=env, stdout=subprocess.DEVNULL, stderr=log_file)
    try:
        await wait_port(mllp, node)
        if command != ["gateway.mllp"]:
            await wait_port(http, node)  # fully started: building the HTTP app holds the loop for a moment
        if subscriber is not None:
            await subscriber.start(http)
        gen = LoadGenerator("127.0.0.1", mllp, beds, events=events, connections=min(beds, 100))
        stats = await gen.run(duration)
        await asyncio.sleep(3.0)  # let the consumer finish the tail
    finally:
        node.send_signal(signal.SIGTERM)
        try:
            node.wait(timeout=30)
        except subprocess.TimeoutExpired:
            node.kill()
            node.wait()
        log_file.close()
    err = log_path.read_bytes()
    if b"Traceback" in err or b"WARNING" in err:
        print(f"{name} at {rate}/s logged:", err.decode(errors="replace")[-3000:], file=sys.stderr)
    return db_url, stats


async def latency_phase(rate: int, duration: float, tmp: Path) -> dict[str, Any]:
    beds = max(1, round(rate / NUMERICS))
    scripted = acute_events(beds, duration)
    # baseline in the same run: the same load on the ingest path alone (no alerting, no HTTP)
    _, baseline = await load_node(["gateway.mllp"], "ingest-only", rate, duration, tmp, None)
    subscriber = AlertSubscriber()
    try:
        db_url, stats = await load_node(["gateway", "serve"], "node", rate, duration, tmp, scripted, subscriber)
    finally:
        notified = await subscriber.stop()
    lat = await alert_latencies(db_url, stats.sent_at, notified)
    return {"offered_obs_per_s": beds * NUMERICS, "beds": beds, "scripted_beds": len(scripted),
            "duration_s": duration, "load": stats.summary(),
            "alert_committed_ms": pct(lat.committed), "alert_notified_ms": pct(lat.notified),
            "alert_after_data_commit_ms": pct(lat.after_data),
            "alert_notified_after_commit_ms": pct(lat.notified_after_commit),
            "notification_channel": "websocket", "alerts_not_notified": lat.not_notified,
            "alerts_by_condition": lat.by_condition, "alerts_without_frame": lat.unmatched,
            "mllp_ack_ms_with_alerting": stats.summary()["ack_ms"],
            "baseline_mllp_ack_ms_ingest_only": baseline.summary()["ack_ms"],
            "baseline_achieved_obs_per_s": baseline.summary()["achieved_obs_per_s"]}


@dataclass
class AlertLatencies:
    committed: list[float] = field(default_factory=list)
    after_data: list[float] = field(default_factory=list)
    notified: list[float] = field(default_factory=list)
    notified_after_commit: list[float] = field(default_factory=list)
    by_condition: dict[str, int] = field(default_factory=dict)
    unmatched: int = 0
    not_notified: int = 0


async def alert_latencies(db_url: str, sent_at: dict[tuple[str, int], float],
                          notified: dict[str, float]) -> AlertLatencies:
    store = Store(make_engine(db_url))
    out = AlertLatencies()
    try:
        opened = [c for c in await store.changes(0, limit=10**7, types=["DetectedIssue"]) if c.version == 1]
        bodies = await store.bodies([c.vid for c in opened])
        mrns: dict[str, str] = {}
        for change in opened:
            issue = loads(bodies[change.vid])
            condition = issue["code"]["coding"][0]["code"]
            out.by_condition[condition] = out.by_condition.get(condition, 0) + 1
            if change.id not in notified:
                out.not_notified += 1
            found = await trigger_frame(store, issue, mrns)
            if found is None or found[0] not in sent_at:
                out.unmatched += 1
                continue
            frame, data_committed = found
            out.committed.append((change.ts / 1e6 - sent_at[frame]) * 1000)
            out.after_data.append((change.ts - data_committed) / 1000)
            if change.id in notified:
                out.notified.append((notified[change.id] - sent_at[frame]) * 1000)
                out.notified_after_commit.append((notified[change.id] - change.ts / 1e6) * 1000)
        return out
    finally:
        await store.engine.dispose()


async def trigger_frame(store: Store, issue: dict[str, Any], mrns: dict[str, str]
                        ) -> tuple[tuple[str, int], int] | None:
    """(MRN, effective second) of the newest evidence Observation (the frame that fired the alert),
    and the time its data committed (µs)."""
    newest: tuple[datetime, int] | None = None
    for ref in (issue.get("evidence") or [{}])[0].get("detail", ()):
        stored = await store.read("Observation", ref["reference"].removeprefix("Observation/"))
        if stored is not None:
            at = datetime.fromisoformat(loads(stored.body)["effectiveDateTime"])
            if newest is None or at > newest[0]:
                newest = (at, stored.last_updated)
    patient = issue["patient"]["reference"].removeprefix("Patient/")
    if patient not in mrns:
        stored = await store.read("Patient", patient)
        if stored is None:
            return None
        mrns[patient] = loads(stored.body)["identifier"][0]["value"]
    return None if newest is None else ((mrns[patient], int(newest[0].timestamp())), newest[1])


# -- engine-only simulations ------------------------------------------------------------------
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _engine(ruleset: str) -> Any:
    from gateway.alerting.models import ModelSource
    from inference import Engine, ModelHandle, builtin_ruleset

    return Engine(builtin_ruleset(ruleset), ModelHandle(ModelSource(Path("/nonexistent")).initial()))


def _samples(bed: str, second: int, v: Any, ruleset: str) -> list[Any]:
    from inference import Param, VitalSample

    at = T0 + timedelta(seconds=second)
    rows = [(Param.HEART_RATE, "mdc:147842", v.hr), (Param.SPO2, "mdc:150456", v.spo2),
            (Param.RESP_RATE, "mdc:151562", v.rr), (Param.SYSTOLIC_BP, "mdc:150037", v.sbp),
            (Param.TEMPERATURE, "mdc:150344", v.temp)]
    if ruleset == "icu-limits":
        rows.append((Param.FIO2, "mdc:152196", v.fio2))  # ventilated: on oxygen, which NEWS2 would score
    elif second % 14400 == 0:  # ward: ACVPU and air-or-oxygen charted on admission and every 4 h
        rows += [(Param.CONSCIOUSNESS, "loinc:67775-7", 0.0), (Param.O2_THERAPY, "loinc:3151-8", 0.0)]
    return [VitalSample(bed, p, round(value, 1), "", at, code, f"{bed}-{code}-{second}", "mon")
            for p, code, value in rows]


def _opens(engine: Any, samples: list[Any], seen: set[str]) -> list[tuple[str, str]]:
    """Alerts opened by these samples (the first version of each DetectedIssue)."""
    out = []
    for sample in samples:
        for r in engine.on_sample(sample).resources:
            if r["resourceType"] == "DetectedIssue" and r["id"] not in seen:
                seen.add(r["id"])
                out.append((r["id"], r["code"]["coding"][0]["code"]))
    return out


def burden(ruleset: str, beds: int, minutes: float, seed: int) -> dict[str, Any]:
    from gateway.simulators.physiology import Physiology

    engine, seen = _engine(ruleset), set[str]()
    by_condition: dict[str, int] = {}
    started = time.perf_counter()
    samples = 0
    for bed in range(beds):
        body = Physiology("stable", seed * 7919 + bed)
        for second in range(int(minutes * 60)):
            batch = _samples(f"s{bed}", second, body.advance(1.0 if second else 0.0), ruleset)
            samples += len(batch)
            for _, condition in _opens(engine, batch, seen):
                by_condition[condition] = by_condition.get(condition, 0) + 1
    bed_hours = beds * minutes / 60
    alerts = sum(by_condition.values())
    return {"ruleset": ruleset, "beds": beds, "simulated_minutes": minutes, "bed_hours": round(bed_hours, 2),
            "alerts": alerts, "alerts_per_bed_hour": round(alerts / bed_hours, 4), "by_condition": by_condition,
            "target_per_bed_hour": 0.05,
            "engine_us_per_value": round((time.perf_counter() - started) / samples * 1e6, 1)}


_ABNORMAL = {  # first value past the rule set's alerting threshold, per scenario's leading signs
    "icu-limits": lambda v: v.spo2 < 90 or v.sbp < 90 or v.hr > 150 or v.rr > 30,
    "news2-ward": None,  # computed from the NEWS2 score itself, below
}


def _normal_band_scores(v: Any) -> dict[str, int]:
    """NEWS2 sub-scores of the parameters the scenarios move: 0 is the chart's normal band."""
    from inference import score_pulse, score_resp_rate, score_spo2_scale1, score_systolic_bp, score_temperature

    return {"hr": score_pulse(v.hr), "rr": score_resp_rate(v.rr), "spo2": score_spo2_scale1(v.spo2),
            "sbp": score_systolic_bp(v.sbp), "temp": score_temperature(v.temp)}


def detection(ruleset: str, beds: int, ramp_s: float, seed: int) -> dict[str, Any]:
    """Scripted deteriorations, one engine per bed.  Three clocks, all simulated seconds:

    - ``scripted``: the scenario's start (the ramp begins; values are still normal for a while);
    - ``clinical`` (the onset the target is measured from): the first second at which the noise-free
      physiology (``Physiology.expected``) of a parameter that was in its normal band (NEWS2 sub-score
      0) at the scripted start has left it.  Independent of the rule set and of monitor noise;
    - ``abnormal``: the first monitored value past the rule set's own alerting threshold (kept for
      comparison with earlier runs; it flatters slow rules).
    """
    from gateway.simulators.physiology import Physiology
    from inference import News2Inputs, compute_news2

    onset = 600
    results: dict[str, list[dict[str, Any]]] = {}
    for scenario in SCENARIOS:
        for bed in range(beds):
            engine, seen = _engine(ruleset), set[str]()
            body = Physiology(scenario, seed * 104_729 + bed, onset_s=onset, ramp_s=ramp_s)
            first_abnormal = alerted = clinical = None
            normal_at_start: set[str] = set()
            condition = None
            early = 0
            for second in range(onset + 900):
                v = body.advance(1.0 if second else 0.0)
                if second == onset:
                    normal_at_start = {k for k, score in _normal_band_scores(body.expected).items() if score == 0}
                if clinical is None and second >= onset and any(
                        score > 0 for k, score in _normal_band_scores(body.expected).items() if k in normal_at_start):
                    clinical = second
                if first_abnormal is None and second >= onset and _abnormal(ruleset, v, compute_news2, News2Inputs):
                    first_abnormal = second
                opened = _opens(engine, _samples(f"d{bed}", second, v, ruleset), seen)
                if opened and second < onset:
                    early += len(opened)  # a false alarm before the deterioration began
                if opened and second >= onset and alerted is None:
                    alerted, condition = second, opened[0][1]  # before the clinical onset counts too
                if alerted is not None and clinical is not None:
                    break
            results.setdefault(scenario, []).append({
                "from_clinical_onset_s": None if alerted is None or clinical is None else alerted - clinical,
                "from_scripted_onset_s": None if alerted is None else alerted - onset,
                "clinical_onset_after_script_s": None if clinical is None else clinical - onset,
                "from_abnormal_s": None if alerted is None or first_abnormal is None else alerted - first_abnormal,
                "condition": condition, "alerts_before_onset": early})

    def share(key: str) -> float:
        rows = [r for rs in results.values() for r in rs]
        return round(sum(1 for r in rows if r[key] is not None and r[key] <= 60) / len(rows), 3)

    def summary(rs: list[dict[str, Any]]) -> dict[str, Any]:
        conditions: dict[str, int] = {}
        for r in rs:
            if r["condition"] is not None:
                conditions[r["condition"]] = conditions.get(r["condition"], 0) + 1
        return {"delay_from_clinical_onset_s": pct([r["from_clinical_onset_s"] for r in rs
                                                    if r["from_clinical_onset_s"] is not None]),
                "clinical_onset_after_script_s": pct([r["clinical_onset_after_script_s"] for r in rs
                                                      if r["clinical_onset_after_script_s"] is not None]),
                "delay_from_scripted_onset_s": pct([r["from_scripted_onset_s"] for r in rs
                                                    if r["from_scripted_onset_s"] is not None]),
                "missed": sum(r["from_scripted_onset_s"] is None for r in rs),
                "first_condition": conditions, "alerts_before_onset": sum(r["alerts_before_onset"] for r in rs)}

    return {"ruleset": ruleset, "ramp_s": ramp_s, "beds_per_scenario": beds,
            "alerted_within_60s_of_clinical_onset": share("from_clinical_onset_s"),
            "alerted_within_60s_of_scripted_onset": share("from_scripted_onset_s"),
            "alerted_within_60s_of_first_abnormal_value": share("from_abnormal_s"),
            "by_scenario": {s: summary(rs) for s, rs in results.items()}}


def _abnormal(ruleset: str, v: Any, compute_news2: Any, inputs: Any) -> bool:
    if ruleset == "icu-limits":
        return bool(_ABNORMAL["icu-limits"](v))
    result = compute_news2(inputs(resp_rate=v.rr, spo2=v.spo2, on_oxygen=False, systolic_bp=v.sbp, pulse=v.hr,
                                  consciousness="A", temperature=v.temp))
    return result.total is not None and (result.total >= 5 or any(s.score == 3 for s in result.subscores))


def simulations(args: argparse.Namespace) -> dict[str, Any]:
    jobs = [("burden", rs, args.stable_beds, args.stable_minutes, args.seed) for rs in args.rulesets
            if args.stable_beds > 0]
    jobs += [("detection", rs, args.detect_beds, ramp, args.seed) for rs in args.rulesets for ramp in args.ramps]
    with ProcessPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(_run_job, jobs))
    return {"burden": [r for (kind, *_), r in zip(jobs, results, strict=True) if kind == "burden"],
            "detection": [r for (kind, *_), r in zip(jobs, results, strict=True) if kind == "detection"]}


def _run_job(job: tuple[Any, ...]) -> dict[str, Any]:
    kind, *rest = job
    return burden(*rest) if kind == "burden" else detection(*rest)


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {"machine": {"cores": os.cpu_count(), "python": platform.python_version(),
                                       "platform": platform.platform(),
                                       "load_average_at_start": [round(x, 2) for x in os.getloadavg()]},
                           # the node's SQLite writer: in a child process (the default) or a thread
                           "writer_process": Settings().writer_process,
                           "targets": {"p99_ms_at_1000": 20, "p99_ms_at_5000": 50, "alerts_per_bed_hour": 0.05,
                                       "deteriorations_alerted_within_60s": 1.0}}
    with tempfile.TemporaryDirectory(prefix="vg-alert-bench-") as tmp:
        out["latency"] = [await latency_phase(rate, args.duration, Path(tmp)) for rate in args.rates
                          if not args.offline]
    if not args.skip_simulations:
        out.update(await asyncio.to_thread(simulations, args))
    out["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]  # the cores are shared
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--rates", type=int, nargs="*", default=[1000, 5000], help="offered Observations/s (none: skip)")
    p.add_argument("--duration", type=float, default=60.0, help="seconds of load per rate")
    p.add_argument("--stable-beds", type=int, default=100)
    p.add_argument("--stable-minutes", type=float, default=30.0)
    p.add_argument("--detect-beds", type=int, default=10, help="beds per scripted deterioration")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--skip-simulations", action="store_true")
    p.add_argument("--offline", action="store_true",
                   help="simulations only (engine alone, simulated time, no node, no network): the same as --rates "
                        "with no value")
    p.add_argument("--rulesets", nargs="+", default=["icu-limits", "news2-ward"])
    p.add_argument("--ramps", type=float, nargs="+", default=[30.0, 300.0],
                   help="ramp of the scripted deteriorations, seconds")
    args = p.parse_args()
    print(json.dumps(asyncio.run(main_async(args)), indent=2))


if __name__ == "__main__":
    main()
