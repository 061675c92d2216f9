"""Hot swap in the running consumer: installed and rolled-back models are picked up between batches,
no event is dropped, and a model that fails verification never replaces the running one."""

from __future__ import annotations

import shutil
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.alerting import AlertingConsumer, ModelSource
from inference import Engine, builtin_ruleset, install, load_trusted_keys, rollback

from ..unit.test_cli_model import SHIPPED, signed_model, trust
from .test_alerting import put_all, spo2, until


async def test_hot_swap_and_refused_model(store, tmp_path: Path):
    key = Ed25519PrivateKey.generate()
    keys = trust(tmp_path, key)
    shutil.copy(SHIPPED / "trusted_keys" / "dev.pub", keys / "dev.pub")
    root = tmp_path / "registry"
    consumer = AlertingConsumer(store, Engine(builtin_ruleset("icu-limits")),
                                models=ModelSource(root, keys), idle_s=0.05)
    await consumer.start()
    try:
        assert consumer.stats.model == "deterioration 1.0.0"  # the shipped model, registry still empty
        trusted = load_trusted_keys(keys)
        install(root, signed_model(tmp_path, "1.1.0", key), tmp_path / "deterioration-1.1.0.manifest.json", trusted)
        await put_all(store, [spo2(s, 97) for s in range(0, 30)])
        await until(lambda: _model(consumer, "deterioration 1.1.0"))
        install(root, signed_model(tmp_path, "1.2.0", key), tmp_path / "deterioration-1.2.0.manifest.json", trusted)
        await put_all(store, [spo2(s, 97) for s in range(30, 60)])
        await until(lambda: _model(consumer, "deterioration 1.2.0"))
        # the rollback target is corrupted on disk: the registry switches, the node refuses it
        (root / "store" / "deterioration" / "1.1.0" / "model.onnx").write_bytes(b"not a model")
        rollback(root)
        await put_all(store, [spo2(s, 97) for s in range(60, 90)])
        await until(lambda: _observations(consumer, 90))
        assert consumer.stats.model == "deterioration 1.2.0"
        assert consumer.stats.errors == 0
    finally:
        await consumer.stop()


async def _model(consumer: AlertingConsumer, label: str) -> bool:
    return consumer.stats.model == label


async def _observations(consumer: AlertingConsumer, n: int) -> bool:
    return consumer.stats.observations >= n
