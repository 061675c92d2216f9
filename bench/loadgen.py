"""Reusable MLLP load generator: N beds, one IHE PCD-01 ORU^R01 with 10 numerics per bed per second.

Each bed follows ``gateway.simulators.physiology`` (stable or a scripted deterioration), so the
values are realistic streams, not constants; ``events`` adds acute step changes (a sudden
desaturation from a given second on) for latency measurements.  Beds are spread over ``connections`` MLLP senders
(like a central station forwarding several beds on one link); each sender is open loop: frames go
out on their wall-clock schedule with one in flight per connection, and a sender that falls behind
sends at once (the achieved rate is reported, not assumed).  Every frame's send time is kept by
(MRN, effective second) so a benchmark can find the frame that caused an alert.

    gen = LoadGenerator(host, port, beds=100, scenarios={3: "sepsis"})
    stats = await gen.run(duration_s=60)

Usable from other benchmarks (``from bench.loadgen import LoadGenerator``) or on its own against a
running node: ``python bench/loadgen.py --port 2575 --beds 100 --duration 60`` prints JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from gateway.mllp.client import MllpClient  # noqa: E402
from gateway.simulators.physiology import Physiology, Vitals  # noqa: E402

_PCD01 = "IHE_PCD_001^IHE PCD^1.3.6.1.4.1.19376.1.6.1.1.1^ISO"
# (MDC code, ref id, unit code^ref, vital attribute, format): 10 numerics per frame
ROWS = (
    ("147842", "MDC_ECG_HEART_RATE", "264864^MDC_DIM_BEAT_PER_MIN", "hr", "{:.0f}"),
    ("149530", "MDC_PULS_OXIM_PULS_RATE", "264864^MDC_DIM_BEAT_PER_MIN", "hr", "{:.0f}"),
    ("150456", "MDC_PULS_OXIM_SAT_O2", "262688^MDC_DIM_PERCENT", "spo2", "{:.0f}"),
    ("151562", "MDC_RESP_RATE", "264928^MDC_DIM_RESP_PER_MIN", "rr", "{:.0f}"),
    ("150037", "MDC_PRESS_BLD_ART_ABP_SYS", "266016^MDC_DIM_MMHG", "sbp", "{:.0f}"),
    ("150038", "MDC_PRESS_BLD_ART_ABP_DIA", "266016^MDC_DIM_MMHG", "dbp", "{:.0f}"),
    ("150039", "MDC_PRESS_BLD_ART_ABP_MEAN", "266016^MDC_DIM_MMHG", "map", "{:.0f}"),
    ("150344", "MDC_TEMP", "268192^MDC_DIM_DEGC", "temp", "{:.1f}"),
    ("151708", "MDC_AWAY_CO2_ET", "266016^MDC_DIM_MMHG", "etco2", "{:.0f}"),
    ("152196", "MDC_CONC_AWAY_O2_INSP", "262688^MDC_DIM_PERCENT", "fio2", "{:.0f}"),
)
NUMERICS = len(ROWS)


def mrn(bed: int) -> str:
    return f"LG{bed:05d}"


def oru(bed: int, vitals: Vitals, at: datetime, control_id: str) -> bytes:
    """One ORU^R01 for one bed at second ``at`` with the 10 numerics of ``ROWS``."""
    ts = at.strftime("%Y%m%d%H%M%S+0000")
    eui = f"00A0C901{bed:08X}"
    segs = [f"MSH|^~\\&|LOADGEN^{eui}^EUI-64|VITALGATE_BENCH|||{ts}||ORU^R01^ORU_R01|{control_id}|P|2.6|||AL|NE"
            f"||UNICODE UTF-8|en^English^ISO639||{_PCD01}",
            f"PID|||{mrn(bed)}^^^VITALGATE^MR||Bench^Bed{bed}^^^^^L", f"PV1||I|ICU^{bed}^1",
            f"OBR|1|||69965^MDC_DEV_MON_PHYSIO_MULTI_PARAM_MDS^MDC|||{ts}"]
    for i, (code, ref, unit, attr, fmt) in enumerate(ROWS, start=1):
        segs.append(f"OBX|{i}|NM|{code}^{ref}^MDC|1.1.{i}.1|{fmt.format(getattr(vitals, attr))}|{unit}^MDC|"
                    f"||||R|||{ts}")
    return "\r".join(segs).encode() + b"\r"


@dataclass
class LoadStats:
    frames: int = 0
    observations: int = 0
    nak: int = 0
    late_frames: int = 0  # sent more than one interval after their schedule
    not_sent: int = 0  # still due when the duration ran out (the receiver was slower than offered)
    ack_ms: list[float] = field(default_factory=list)
    sent_at: dict[tuple[str, int], float] = field(default_factory=dict)  # (MRN, epoch s) -> wall time
    elapsed_s: float = 0.0

    def summary(self) -> dict[str, object]:
        acks = sorted(self.ack_ms)
        pct = (lambda q: round(acks[min(len(acks) - 1, int(q * len(acks)))], 2)) if acks else (lambda q: None)
        return {"frames": self.frames, "observations": self.observations, "nak": self.nak,
                "late_frames": self.late_frames, "frames_not_sent": self.not_sent,
                "elapsed_s": round(self.elapsed_s, 2),
                "achieved_obs_per_s": round(self.observations / self.elapsed_s, 1) if self.elapsed_s else 0,
                "ack_ms": {"p50": pct(0.5), "p99": pct(0.99), "max": round(acks[-1], 2) if acks else None,
                           "mean": round(statistics.fmean(acks), 2) if acks else None}}


class LoadGenerator:
    """``beds`` simulated patients sending to one MLLP endpoint; ``scenarios`` maps bed -> scenario."""

    def __init__(self, host: str, port: int, beds: int, *, rate_hz: float = 1.0, connections: int | None = None,
                 scenarios: Mapping[int, str] | None = None, onset_s: float = 60.0, ramp_s: float = 30.0,
                 events: Mapping[int, tuple[float, Mapping[str, float]]] | None = None,
                 seed: int = 1, start: datetime | None = None):
        self.host, self.port, self.beds, self.rate_hz = host, port, beds, rate_hz
        self.connections = connections or min(beds, 25)
        self.scenarios = dict(scenarios or {})
        self.events = dict(events or {})  # bed -> (from second, vitals overridden): an acute step change
        self.onset_s, self.ramp_s, self.seed = onset_s, ramp_s, seed
        self.start = (start or datetime.now(UTC)).replace(microsecond=0)
        self.stats = LoadStats()
        self.run_id = f"{int(time.time() * 1000) % 10**10:010d}"

    def physiology(self, bed: int) -> Physiology:
        return Physiology(self.scenarios.get(bed, "stable"), self.seed * 100_003 + bed,
                          onset_s=self.onset_s, ramp_s=self.ramp_s)

    async def run(self, duration_s: float) -> LoadStats:
        """Send for ``duration_s`` of wall time (frames carry effective times from ``start``)."""
        groups = [list(range(c, self.beds, self.connections)) for c in range(self.connections)]
        t0 = time.perf_counter()
        wall0 = time.time()
        await asyncio.gather(*(self._sender(g, t0, wall0, duration_s) for g in groups if g))
        self.stats.elapsed_s = time.perf_counter() - t0
        return self.stats

    async def _sender(self, beds: list[int], t0: float, wall0: float, duration_s: float) -> None:
        body = {bed: self.physiology(bed) for bed in beds}
        interval = 1.0 / self.rate_hz
        async with MllpClient(self.host, self.port, timeout=30.0) as client:
            n = 0
            while n * interval < duration_s:
                for bed in beds:
                    # each bed at its own phase in the interval, as unsynchronised monitors are (all
                    # connections sending at the same instant would measure a burst, not a load)
                    due = t0 + (n + bed / self.beds) * interval
                    if time.perf_counter() - t0 > duration_s:  # the node cannot keep up: stop on time
                        self.stats.not_sent += 1
                        continue
                    delay = due - time.perf_counter()
                    if delay > 0:
                        await asyncio.sleep(delay)
                    elif delay < -interval:
                        self.stats.late_frames += 1
                    await self._frame(client, bed, body[bed], n, interval)
                n += 1

    async def _frame(self, client: MllpClient, bed: int, physiology: Physiology, n: int, interval: float) -> None:
        vitals = physiology.advance(interval if n else 0.0)
        event = self.events.get(bed)
        if event is not None and n * interval >= event[0]:
            vitals = replace(vitals, **event[1])
        at = self.start + timedelta(seconds=n * interval)
        message = oru(bed, vitals, at, f"{self.run_id}-{bed:05d}-{n:08d}")  # unique per run: no 205s
        sent = time.time()
        self.stats.sent_at[(mrn(bed), int(at.timestamp()))] = sent
        ack = await client.call(message)
        self.stats.ack_ms.append((time.time() - sent) * 1000)
        self.stats.frames += 1
        self.stats.observations += NUMERICS
        if ack is None or b"MSA|CA|" not in ack and b"MSA|AA|" not in ack:
            self.stats.nak += 1


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=2575)
    p.add_argument("--beds", type=int, default=100)
    p.add_argument("--rate-hz", type=float, default=1.0, help="frames per bed per second")
    p.add_argument("--connections", type=int, default=None)
    p.add_argument("--duration", type=float, default=30.0)
    args = p.parse_args()
    gen = LoadGenerator(args.host, args.port, args.beds, rate_hz=args.rate_hz, connections=args.connections)
    stats = asyncio.run(gen.run(args.duration))
    print(json.dumps({"offered_obs_per_s": args.beds * args.rate_hz * NUMERICS, **stats.summary()}, indent=2))


if __name__ == "__main__":
    main()
