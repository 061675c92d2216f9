"""The node's cyclic-collector policy, applied once the node is up (``vitalgate serve``, the benches).

Why a policy at all: the collector stops the event loop that ingest, alerting and subscription
fan-outs share. Everything loaded at start-up (modules, FHIR models, mapping tables, the HTTP app)
lives as long as the node, so it is frozen out of the collector's sight; a full collection then
scans only what came later. The thresholds decide how often the young generations are collected
and how often a full collection may run (docs/subscriptions.md, "Garbage collection", has the
measurements behind the defaults in ``Settings``).
"""

from __future__ import annotations

import asyncio
import gc
import os
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Protocol


class GcSettings(Protocol):
    gc_freeze: bool
    gc_thresholds: tuple[int, int, int]


def parse_thresholds(value: Any) -> tuple[int, int, int]:
    """``"700,10,100"`` (or a sequence of three) to ``gc.set_threshold`` arguments.

    A 0 for generation 0 would disable the collector altogether (cyclic garbage never freed):
    refused, as are negative values."""
    parts = value.split(",") if isinstance(value, str) else list(value)
    try:
        ints = tuple(int(str(p).strip()) for p in parts)
    except ValueError:
        raise ValueError(f"gc thresholds must be three integers, e.g. 700,10,100: {value!r}") from None
    if len(ints) != 3:
        raise ValueError(f"gc thresholds must be three integers, e.g. 700,10,100: {value!r}")
    if ints[0] < 1 or ints[1] < 1 or ints[2] < 1:
        raise ValueError(f"gc thresholds must be at least 1 (0 disables the collector): {value!r}")
    return ints


def apply_gc_policy(settings: GcSettings) -> None:
    """Call once the node's long-lived parts are built, before it takes traffic."""
    if settings.gc_freeze:
        gc.freeze()
    gc.set_threshold(*settings.gc_thresholds)


@dataclass
class GcPauses:
    """The collector's pauses while attached (``gc.callbacks``), per generation; for the benches."""

    ms: dict[int, list[float]] = field(default_factory=lambda: {0: [], 1: [], 2: []})
    collected: dict[int, int] = field(default_factory=lambda: {0: 0, 1: 0, 2: 0})  # cyclic garbage freed
    _t: float = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._t = time.perf_counter()
        else:
            self.ms[info["generation"]].append((time.perf_counter() - self._t) * 1000)
            self.collected[info["generation"]] += info["collected"]

    def __enter__(self) -> GcPauses:
        gc.callbacks.append(self)
        return self

    def __exit__(self, *exc: object) -> None:
        gc.callbacks.remove(self)

    def summary(self, seconds: float) -> dict[str, Any]:
        every = sorted(x for xs in self.ms.values() for x in xs)
        out: dict[str, Any] = {f"gen{g}": {"count": len(xs), "per_s": round(len(xs) / seconds, 2),
                                           "max_ms": round(max(xs, default=0.0), 2), "total_ms": round(sum(xs), 1),
                                           "collected": self.collected[g]}
                               for g, xs in self.ms.items()}
        out["all"] = {"count": len(every), "total_ms": round(sum(every), 1),
                      "p99_ms": round(every[min(len(every) - 1, int(0.99 * len(every)))], 2) if every else 0.0,
                      "max_ms": round(every[-1], 2) if every else 0.0,
                      "share_of_wall": round(sum(every) / 1000 / seconds, 4)}
        return out


def rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


async def sample_loop(stop: asyncio.Event, lag_ms: list[float], memory: list[tuple[float, float, int]],
                      tick_s: float, memory_every_s: float) -> None:
    """Until ``stop``: the event loop's lag (a ``tick_s`` sleep's overshoot, ms) and, every
    ``memory_every_s``, ``(s since start, RSS MiB, Python's allocated blocks in thousands)``: the
    blocks are the interpreter's heap without what C libraries (SQLite's page cache) hold."""
    t0 = next_at = time.perf_counter()
    while not stop.is_set():
        t = time.perf_counter()
        if t >= next_at:
            memory.append((round(t - t0, 1), round(rss_mib(), 1), sys.getallocatedblocks() // 1000))
            next_at += memory_every_s
        await asyncio.sleep(tick_s)
        lag_ms.append((time.perf_counter() - t - tick_s) * 1000)
    memory.append((round(time.perf_counter() - t0, 1), round(rss_mib(), 1), sys.getallocatedblocks() // 1000))
