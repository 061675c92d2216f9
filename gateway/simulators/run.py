"""``run_simulation``: drive simulated beds over the real transports.

Per bed, over MLLP with each ACK awaited: an ADT^A01 admitting the bed's patient, a monitor
(PCD-01 with MDC codes, every other bed the PIIC MDIL variant; with ``waveforms`` the MDC
beds add ECG/pleth/ABP NA arrays) at 1 Hz unless ``hl7_monitors`` is off, and
``pumps_per_bed`` infusion pumps every 10 s. Device simulators the gateway polls
(:class:`DeviceSims`): a PB840 (poll/response port, plus its 50 Hz waveform port) on
``pb840_listen`` and an IntelliVue monitor (UDP) on ``intellivue_listen``, one per bed on
consecutive ports (port 0: any free port). ``DeviceSims.devices_setting()`` is the
``VITALGATE_DEVICES`` value that makes a node poll them. Messages are paced in real time;
scenarios are drawn per bed from ``scenario_mix`` with a seeded generator.
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
from gateway.simulators.intellivue import IntellivueSimulator
from gateway.simulators.mllp_sender import MllpSender, ack_code
from gateway.simulators.pb840 import Pb840Simulator, Pb840WaveformPort, VentSettings
from gateway.simulators.physiology import SCENARIOS, Physiology

__all__ = ["DeviceSims", "SimulationStats", "assign_scenarios", "run_simulation", "send_beds"]


@dataclass
class SimulationStats:
    beds: int
    duration_s: float = 0.0
    messages_sent: int = 0
    acks: Counter[str] = field(default_factory=Counter)
    send_errors: int = 0
    pb840_ports: list[int] = field(default_factory=list)
    pb840_wave_ports: list[int] = field(default_factory=list)
    intellivue_ports: list[int] = field(default_factory=list)
    pb840_polls_answered: int = 0
    intellivue_polls_answered: int = 0
    scenarios: dict[int, str] = field(default_factory=dict)
    ack_ms: list[float] = field(default_factory=list)  # send -> ACK (the node commits first)
    devices_setting: str = ""

    def as_dict(self) -> dict[str, object]:
        lat = sorted(self.ack_ms)

        def pct(p: float) -> float | None:
            return round(lat[min(len(lat) - 1, int(len(lat) * p))], 2) if lat else None

        return {"beds": self.beds, "duration_s": round(self.duration_s, 3),
                "messages_sent": self.messages_sent, "acks": dict(self.acks),
                "send_errors": self.send_errors, "ack_ms_p50": pct(0.5), "ack_ms_p99": pct(0.99),
                "pb840_ports": self.pb840_ports, "pb840_wave_ports": self.pb840_wave_ports,
                "intellivue_ports": self.intellivue_ports,
                "pb840_polls_answered": self.pb840_polls_answered,
                "intellivue_polls_answered": self.intellivue_polls_answered,
                "devices_setting": self.devices_setting, "scenarios": self.scenarios}


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
                waveforms: bool = False, hl7_monitor: bool = True, pumps: int = 1
                ) -> Iterator[tuple[float, bytes]]:
    feed = BedFeed(bed)
    streams: list[Iterator[tuple[float, bytes]]] = [
        iter([(0.0, adt_admit(feed, start, f"A{bed:04d}-{seed}-{int(start.timestamp())}"))])]
    if hl7_monitor:
        variant: Variant = "mdil" if bed % 2 == 0 else "mdc"
        streams.append(monitor_stream(feed, Physiology(scenario, seed * 1000 + bed), start, duration,
                                      variant=variant, waveforms=waveforms))
    for device in range(2, 2 + pumps):
        view = Physiology(scenario, seed * 1000 + bed)
        streams.append(_with_clock(view, pump_stream(feed, start, duration, physiology=view, device=device)))
    return merge_streams(streams)


def _with_clock(phys: Physiology, stream: Iterator[tuple[float, bytes]]
                ) -> Iterator[tuple[float, bytes]]:
    for t, msg in stream:
        phys.advance(max(0.0, t - phys.t))
        yield t, msg


async def _send_bed(stream: Iterator[tuple[float, bytes]], target: tuple[str, int],
                    t0: float, stats: SimulationStats, measure_after_s: float = 0.0) -> None:
    sender = MllpSender(*target)
    try:
        for offset, message in stream:
            delay = t0 + offset - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            sent = time.monotonic()
            try:
                ack = await sender.send(message)
            except (OSError, TimeoutError, asyncio.IncompleteReadError):
                stats.send_errors += 1
                await sender.close()
                continue
            if offset >= measure_after_s:  # latencies of a warm-up period are not counted
                stats.ack_ms.append((time.monotonic() - sent) * 1000)
            stats.messages_sent += 1
            stats.acks[ack_code(ack) or "none"] += 1
    finally:
        await sender.close()


async def send_beds(stats: SimulationStats, mllp: tuple[str, int], duration: float, *, seed: int = 0,
                    waveforms: bool = False, hl7_monitors: bool = True, pumps_per_bed: int = 1,
                    measure_after_s: float = 0.0) -> None:
    """Send every bed's HL7v2 feed for ``duration`` seconds (paced in real time)."""
    now, t0 = datetime.now(UTC), time.monotonic()
    async with asyncio.TaskGroup() as group:
        for bed, scenario in stats.scenarios.items():
            stream = _bed_stream(bed, scenario, seed, now, duration, waveforms, hl7_monitors, pumps_per_bed)
            group.create_task(_send_bed(stream, mllp, t0, stats, measure_after_s))


class DeviceSims:
    """PB840 (poll + waveform port) and IntelliVue simulators for a range of beds."""

    def __init__(self, scenarios: Mapping[int, str], seed: int = 0, *,
                 pb840_listen: tuple[str, int] | None = None,
                 intellivue_listen: tuple[str, int] | None = None, monitor_waves: str = "standard") -> None:
        self.scenarios, self.seed = dict(scenarios), seed
        self.monitor_waves = monitor_waves
        self.pb840_listen, self.intellivue_listen = pb840_listen, intellivue_listen
        self.vents: dict[int, tuple[Pb840Simulator, Pb840WaveformPort]] = {}
        self.monitors: dict[int, IntellivueSimulator] = {}

    async def start(self) -> None:
        for bed, scenario in self.scenarios.items():
            if self.pb840_listen is not None:
                host, base = self.pb840_listen
                phys, settings = Physiology(scenario, self.seed * 1000 + bed), VentSettings(serial=f"35100{bed:05d}")
                vent = Pb840Simulator(phys, settings, host=host, port=base + 2 * (bed - 1) if base else 0)
                waves = Pb840WaveformPort(phys, settings, host=host, port=base + 2 * (bed - 1) + 1 if base else 0)
                await vent.start()
                await waves.start()
                self.vents[bed] = (vent, waves)
            if self.intellivue_listen is not None:
                host, base = self.intellivue_listen
                mon = IntellivueSimulator(Physiology(scenario, self.seed * 1000 + bed), host=host,
                                          port=base + bed - 1 if base else 0,
                                          system_id=bytes.fromhex(f"0009fb{bed:06x}"), bed_label=f"ICU-{bed:02d}",
                                          waves=self.monitor_waves)
                await mon.start()
                self.monitors[bed] = mon

    def devices_setting(self) -> str:
        """``VITALGATE_DEVICES`` for a node polling these simulators, each tied to its bed."""
        items = []
        for bed, (vent, waves) in self.vents.items():
            items += [f"pb840@{vent.host}:{vent.port}#ICU^{bed}^1",
                      f"pb840-waves@{waves.host}:{waves.port}#ICU^{bed}^1"]
        for bed, mon in self.monitors.items():
            items.append(f"intellivue@{mon.host}:{mon.port}#ICU^{bed}^1")
        return ",".join(items)

    def fill(self, stats: SimulationStats) -> None:
        stats.pb840_ports = [v.port for v, _ in self.vents.values()]
        stats.pb840_wave_ports = [w.port for _, w in self.vents.values()]
        stats.intellivue_ports = [m.port for m in self.monitors.values()]
        stats.devices_setting = self.devices_setting()

    async def close(self, stats: SimulationStats | None = None) -> None:
        for vent, waves in self.vents.values():
            if stats is not None:
                stats.pb840_polls_answered += vent.polls_answered
            await vent.close()
            await waves.close()
        for mon in self.monitors.values():
            if stats is not None:
                stats.intellivue_polls_answered += mon.polls_answered
            await mon.close()


async def run_simulation(beds: int, duration: float, mllp: tuple[str, int] | None,
                         pb840_listen: tuple[str, int] | None,
                         scenario_mix: Mapping[str, float] | None = None,
                         seed: int = 0, *, waveforms: bool = False,
                         intellivue_listen: tuple[str, int] | None = None,
                         hl7_monitors: bool = True, pumps_per_bed: int = 1,
                         measure_after_s: float = 0.0, monitor_waves: str = "standard") -> SimulationStats:
    """Run ``beds`` simulated beds for ``duration`` seconds; return what was sent."""
    if beds < 1 or duration <= 0:
        raise ValueError("beds must be >= 1 and duration > 0")
    stats = SimulationStats(beds=beds, scenarios=assign_scenarios(beds, scenario_mix, seed))
    sims = DeviceSims(stats.scenarios, seed, pb840_listen=pb840_listen, intellivue_listen=intellivue_listen,
                      monitor_waves=monitor_waves)
    started = time.monotonic()
    try:
        await sims.start()
        sims.fill(stats)
        if mllp is not None:
            await send_beds(stats, mllp, duration, seed=seed, waveforms=waveforms,
                            hl7_monitors=hl7_monitors, pumps_per_bed=pumps_per_bed,
                            measure_after_s=measure_after_s)
        await asyncio.sleep(max(0.0, duration - (time.monotonic() - started)))
    finally:
        await sims.close(stats)
        stats.duration_s = time.monotonic() - started
    return stats
