"""The wheel carries its migrations and the shipped model: ``vitalgate db upgrade`` and the
alerting engine's signed model work from an installed package."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]


def test_wheel_upgrades_a_database_outside_the_checkout(tmp_path: Path):
    pytest.importorskip("hatchling", reason="building the wheel needs hatchling (in the dev extras)")
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                    "-w", str(wheels), str(ROOT)], check=True, capture_output=True)
    wheel = next(wheels.glob("vitalgate-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert "fhir_server/_alembic/env.py" in names
    assert {"gateway/_models/deterioration.onnx", "gateway/_models/deterioration.manifest.json",
            "gateway/_models/trusted_keys/dev.pub"} <= set(names)
    assert not any(n.startswith("alembic/") for n in names), "a top-level alembic/ would shadow the library"
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(target),
                    str(wheel)], check=True, capture_output=True)
    run_dir = tmp_path / "elsewhere"
    run_dir.mkdir()
    db = run_dir / "installed.db"
    env = {**os.environ, "PYTHONPATH": str(target), "VITALGATE_DATABASE_URL": f"sqlite:///{db}"}
    code = ("import gateway, fhir_server.storage.migrate as m; "
            f"assert str(m.script_location()).startswith({str(target)!r}), m.script_location(); "
            "from gateway.alerting.models import ModelSource; "
            "model = ModelSource(__import__('pathlib').Path('registry')).initial(); "
            "assert model is not None and model.name == 'deterioration', model; "
            "from gateway.cli import app; app(['db', 'upgrade'])")
    done = subprocess.run([sys.executable, "-c", code], cwd=run_dir, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    import sqlite3

    with sqlite3.connect(db) as conn:
        tables = {r[0] for r in conn.execute("select name from sqlite_master where type='table'")}
    assert {"resource", "resource_version", "change_log", "consumer_cursor", "alembic_version"} <= tables
