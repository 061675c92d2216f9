"""The shipped training script is reproducible; the runtime wraps onnxruntime failures."""

import hashlib
import json

import pytest

from inference.errors import ModelError
from inference.features import FEATURES, features_from_window
from inference.model import RiskModel, session_options
from inference.registry import load_trusted_keys, read_manifest

from .conftest import REPO, run_training


def _digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_training_twice_gives_identical_files(trained, tmp_path):
    out, _, keys = trained
    run_training(tmp_path / "again", keys / "test.pem")
    assert _digest(tmp_path / "again" / "deterioration.onnx") == _digest(out / "deterioration.onnx")
    # Ed25519 signatures are deterministic: same key, same manifest bytes
    assert (tmp_path / "again" / "deterioration.manifest.json").read_bytes() == (
        out / "deterioration.manifest.json").read_bytes()


def test_manifest_matches_file_and_reports_heldout_auroc(trained):
    out, _, _ = trained
    manifest = json.loads((out / "deterioration.manifest.json").read_text())
    assert manifest["sha256"] == _digest(out / "deterioration.onnx")
    assert manifest["features"] == list(FEATURES)
    assert 0.5 < manifest["training"]["auroc_heldout"] <= 1.0


def test_shipped_model_verifies_with_shipped_public_key():
    keys = load_trusted_keys(REPO / "models" / "trusted_keys")
    manifest = read_manifest(REPO / "models" / "deterioration.manifest.json", keys)
    assert manifest.sha256 == _digest(REPO / "models" / "deterioration.onnx")


def _model(out):
    return RiskModel.from_file(out / "deterioration.onnx", "deterioration", "1.0.0", FEATURES)


def test_sick_scores_higher_than_stable(trained):
    model = _model(trained[0])
    stable = model.predict([75, 16, 97, 120, 37.0, 21, 0, 0, 0, 0])
    septic = model.predict([125, 28, 93, 88, 39.0, 21, 1.5, 0.5, -0.1, -1.0])
    assert 0.0 <= stable < 0.5 < septic <= 1.0


def test_predict_on_window_features(trained):
    from datetime import UTC, datetime

    from inference.window import PatientWindow

    vector = features_from_window(PatientWindow(), datetime(2026, 1, 1, tzinfo=UTC))
    assert set(vector.imputed) == set(FEATURES)
    assert 0.0 <= _model(trained[0]).predict(vector.values) <= 1.0


def test_session_options_single_thread_no_spinning():
    options = session_options()
    assert options.intra_op_num_threads == 1 and options.inter_op_num_threads == 1
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"


def test_errors_are_model_errors(trained, tmp_path):
    with pytest.raises(ModelError, match="cannot load"):
        RiskModel(b"not a model", "x", "1.0.0", FEATURES)
    with pytest.raises(ModelError, match="manifest lists 3 features"):
        RiskModel((trained[0] / "deterioration.onnx").read_bytes(), "x", "1.0.0", ("a", "b", "c"))
    with pytest.raises(ModelError, match="expected 10 features"):
        _model(trained[0]).predict([1.0])
    with pytest.raises(ModelError, match="cannot read"):
        RiskModel.from_file(tmp_path / "missing.onnx", "x", "1.0.0", FEATURES)
