"""The node's cyclic-collector policy: read from VITALGATE_GC_*, applied by ``vitalgate serve``."""

from __future__ import annotations

import asyncio
import gc
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import ValidationError

from gateway.app import serve
from gateway.gc_policy import GcPauses, apply_gc_policy, sample_loop
from gateway.settings import Settings


@pytest.fixture
def gc_state() -> Iterator[None]:
    """Tests here change the process's collector; put it back."""
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


def test_thresholds_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VITALGATE_GC_THRESHOLDS", " 5000, 20 ,300")
    monkeypatch.setenv("VITALGATE_GC_FREEZE", "false")
    s = Settings()
    assert s.gc_thresholds == (5000, 20, 300)
    assert s.gc_freeze is False


@pytest.mark.parametrize("bad", ["700,10", "700,10,10,10", "700,ten,10", "0,10,10", "700,10,-1", ""])
def test_bad_thresholds_are_refused(monkeypatch: pytest.MonkeyPatch, bad: str) -> None:
    monkeypatch.setenv("VITALGATE_GC_THRESHOLDS", bad)
    with pytest.raises(ValidationError, match="gc thresholds"):
        Settings()


def test_default_raises_the_full_collection_threshold() -> None:
    # measured default (docs/subscriptions.md, "Garbage collection"): full collections rarer than Python's
    s = Settings()
    assert s.gc_freeze is True
    assert s.gc_thresholds[2] > 10 and s.gc_thresholds[0] == 700  # young collections: Python's


def test_apply_freezes_what_exists_and_sets_thresholds(gc_state: None) -> None:
    long_lived = [[i] for i in range(1000)]  # tracked containers, alive before the node takes traffic
    gc.unfreeze()
    apply_gc_policy(Settings(gc_thresholds="1234,5,67"))
    assert gc.get_threshold() == (1234, 5, 67)
    assert gc.get_freeze_count() >= len(long_lived)
    in_sight = {id(o) for o in gc.get_objects()}  # generations 0-2, not the frozen ones
    assert not any(id(x) in in_sight for x in long_lived)
    later = [0]
    assert any(o is later for o in gc.get_objects())  # made afterwards: still in the collector's sight


def test_apply_without_freeze(gc_state: None) -> None:
    gc.unfreeze()
    apply_gc_policy(Settings(gc_freeze=False, gc_thresholds="700,10,100"))
    assert gc.get_freeze_count() == 0
    assert gc.get_threshold() == (700, 10, 100)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_serve_applies_the_policy_once_started(tmp_path: Path, gc_state: None) -> None:
    gc.unfreeze()
    seen: dict[str, object] = {}

    async def started(node: object) -> None:
        await asyncio.sleep(0)
        seen["thresholds"] = gc.get_threshold()
        seen["frozen"] = gc.get_freeze_count()

    settings = Settings(database_url=f"sqlite:///{tmp_path}/node.db", http_port=_free_port(),
                        gc_thresholds="4321,9,87", log_level="WARNING")
    await serve(settings, extra=started, parts=[])
    assert seen["thresholds"] == (4321, 9, 87)
    assert isinstance(seen["frozen"], int) and seen["frozen"] > 10_000  # modules, models, the app


def test_pauses_are_recorded_per_generation() -> None:
    with GcPauses() as pauses:
        gc.collect(0)
        gc.collect(2)
    assert len(pauses.ms[0]) == 1 and len(pauses.ms[2]) == 1
    summary = pauses.summary(1.0)
    assert summary["all"]["count"] == 2
    assert summary["gen2"]["max_ms"] == summary["all"]["max_ms"] >= summary["gen0"]["max_ms"]
    assert pauses not in gc.callbacks


async def test_sample_loop_records_lag_and_memory() -> None:
    stop, lag, memory = asyncio.Event(), [], []
    task = asyncio.create_task(sample_loop(stop, lag, memory, 0.001, 0.0))
    while len(lag) < 3:
        await asyncio.sleep(0.001)
    stop.set()
    await task
    assert len(memory) >= 3
    assert all(rss > 0 and blocks > 0 for _, rss, blocks in memory)
    assert [t for t, _, _ in memory] == sorted(t for t, _, _ in memory)
