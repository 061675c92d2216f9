"""``run_simulation``: drive simulated beds over the real transports.

Per bed: a monitor (PCD-01 with MDC codes, every other bed the PIIC MDIL variant) at 1 Hz
and an infusion pump every 10 s, sent over MLLP with each ACK awaited; optionally a PB840
simulator listening on ``pb840_listen`` port + bed index for the gateway to poll.
Messages are paced in real time. Scenarios are assigned per bed from ``scenario_mix``
with a seeded random generator.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from gateway.simulators.hl7_monitor import (
    BedFeed,
    Variant,
    adt_admit,
    merge_streams,
    monitor_stream,
    pump_stream,
)
from gateway.simulators.mllp_sender import MllpSender, ack_code
from gateway.simulators.pb840 import Pb840Simulator, VentSettings
from gateway.simulators.physiology import SCENARIOS, Physiology

__all__ = ["SimulationStats", "assign_scenarios", "run_simulation"]


@dataclass
class SimulationStats:
    beds: int
    duration_s: float = 0.0
    messages_sent: int = 0
    acks: Counter[str] = field(default_factory=Counter)
    send_errors: int = 0
    pb840_ports: list[int] = field(default_factory=list)
    pb840_polls_answered: int = 0
    scenarios: dict[int, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, object]:
        return {"beds": self.beds, "duration_s": round(self.duration_s, 3),
                "messages_sent": self.messages_sent, "acks": dict(self.acks),
                "send_errors": self.send_errors, "pb840_ports": self.pb840_ports,
                "pb840_polls_answered": self.pb840_polls_answered,
                "scenarios": self.scenarios}


def assign_scenarios(beds: int, mix: Mapping[str, float] | None, seed: int) -> dict[int, str]:
    """Bed number (1-based) -> scenario, drawn with the given weights (default all stable)."""
    weights = dict(mix or {"stable": 1.0})
    unknown = set(weights) - set(SCENARIOS)
    if unknown:
        raise ValueError(f"unknown scenarios {sorted(unknown)}; known: {SCENARIOS}")
    rng = random.Random(seed)
    names = list(weights)
    return {b: rng.choices(names, [weights[n] for n in names])[0] for b in range(1, beds + 1)}


def _bed_stream(bed: int, scenario: str, seed: int, start: datetime, duration: float,
                waveforms: bool = False) -> Iterator[tuple[float, bytes]]:
    feed = BedFeed(bed)
    monitor = Physiology(scenario, seed * 1000 + bed)
    pump_view = Physiology(scenario, seed * 1000 + bed)
    variant: Variant = "mdil" if bed % 2 == 0 else "mdc"
    admit = iter([(0.0, adt_admit(feed, start, f"A{bed:04d}-{seed}-{int(start.timestamp())}"))])
    return merge_streams([
        admit,
        monitor_stream(feed, monitor, start, duration, variant=variant, waveforms=waveforms),
        _with_clock(pump_view, pump_stream(feed, start, duration, physiology=pump_view)),
    ])


def _with_clock(phys: Physiology, stream: Iterator[tuple[float, bytes]]
                ) -> Iterator[tuple[float, bytes]]:
    for t, msg in stream:
        phys.advance(max(0.0, t - phys.t))
        yield t, msg


async def _send_bed(stream: Iterator[tuple[float, bytes]], target: tuple[str, int],
                    t0: float, stats: SimulationStats) -> None:
    sender = MllpSender(*target)
    try:
        for offset, message in stream:
            delay = t0 + offset - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            try:
                ack = await sender.send(message)
            except (OSError, TimeoutError, asyncio.IncompleteReadError):
                stats.send_errors += 1
                await sender.close()
                continue
            stats.messages_sent += 1
            stats.acks[ack_code(ack) or "none"] += 1
    finally:
        await sender.close()


async def run_simulation(beds: int, duration: float, mllp: tuple[str, int] | None,
                         pb840_listen: tuple[str, int] | None,
                         scenario_mix: Mapping[str, float] | None = None,
                         seed: int = 0, *, waveforms: bool = False) -> SimulationStats:
    """Run ``beds`` simulated beds for ``duration`` seconds; return what was sent."""
    if beds < 1 or duration <= 0:
        raise ValueError("beds must be >= 1 and duration > 0")
    stats = SimulationStats(beds=beds, scenarios=assign_scenarios(beds, scenario_mix, seed))
    vents: list[Pb840Simulator] = []
    started = time.monotonic()
    try:
        if pb840_listen is not None:
            host, base_port = pb840_listen
            for bed, scenario in stats.scenarios.items():
                settings = VentSettings(serial=f"35100{bed:05d}")
                sim = Pb840Simulator(Physiology(scenario, seed * 1000 + bed), settings,
                                     host=host, port=base_port + bed - 1 if base_port else 0)
                await sim.start()
                vents.append(sim)
            stats.pb840_ports = [v.port for v in vents]
        now = datetime.now(UTC)
        async with asyncio.TaskGroup() as group:
            if mllp is not None:
                for bed, scenario in stats.scenarios.items():
                    stream = _bed_stream(bed, scenario, seed, now, duration, waveforms)
                    group.create_task(_send_bed(stream, mllp, started, stats))
            if vents:
                group.create_task(asyncio.sleep(max(0.0, duration - (time.monotonic()
                                                                       - started))))
    finally:
        for v in vents:
            stats.pb840_polls_answered += v.polls_answered
            await v.close()
        stats.duration_s = time.monotonic() - started
    return stats
