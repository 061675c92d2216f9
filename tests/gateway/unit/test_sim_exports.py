"""Declared public API of the simulator, device and PB840 packages resolves."""

from __future__ import annotations

import importlib

import pytest


@pytest.mark.parametrize("name", ["gateway.simulators", "gateway.devices", "mappers.pb840",
                                  "mappers.profiles", "mappers.intellivue", "mappers.waveform",
                                  "mappers.association", "mappers.device_status", "gateway.devices.service"])
def test_all_names_exist(name):
    module = importlib.import_module(name)
    assert module.__all__
    for attr in module.__all__:
        assert hasattr(module, attr), f"{name}.{attr}"
