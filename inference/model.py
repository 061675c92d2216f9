"""The ONNX deterioration model at run time: one reused onnxruntime session per model version.

The session is created once, with one intra-op and one inter-op thread and spinning disabled, so
the model never steals the ingest core (a spinning thread pool burns a CPU between calls).  Every
onnxruntime failure is translated into ``ModelError`` here.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnxruntime as ort
from onnxruntime.capi import onnxruntime_pybind11_state as _ort_state

from inference.errors import ModelError

__all__ = ["RiskModel", "session_options"]

_ORT_ERRORS: tuple[type[BaseException], ...] = (
    _ort_state.Fail,
    _ort_state.InvalidArgument,
    _ort_state.InvalidGraph,
    _ort_state.InvalidProtobuf,
    _ort_state.NoSuchFile,
    _ort_state.NoModel,
    _ort_state.NotImplemented,
    _ort_state.RuntimeException,
    _ort_state.EngineError,
)


def session_options() -> ort.SessionOptions:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    return options


class RiskModel:
    """A loaded model: ``predict(features) -> probability`` on one reused session."""

    def __init__(self, model_bytes: bytes, name: str, version: str, features: Sequence[str]):
        self.name = name
        self.version = version
        self.features = tuple(features)
        try:
            self._session = ort.InferenceSession(
                model_bytes, sess_options=session_options(), providers=["CPUExecutionProvider"]
            )
        except _ORT_ERRORS as exc:
            raise ModelError(f"cannot load model {name} {version}: {exc}") from exc
        inputs = self._session.get_inputs()
        if len(inputs) != 1 or inputs[0].shape[-1] != len(self.features):
            raise ModelError(
                f"model {name} {version} expects input {[i.shape for i in inputs]}, "
                f"manifest lists {len(self.features)} features"
            )
        self._input = inputs[0].name
        self._output = self._session.get_outputs()[0].name

    @classmethod
    def from_file(cls, path: str | Path, name: str, version: str, features: Sequence[str]) -> RiskModel:
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            raise ModelError(f"cannot read model file {path}: {exc.strerror}") from exc
        return cls(data, name, version, features)

    def predict(self, values: Sequence[float]) -> float:
        """Probability of deterioration for one feature vector, in ``self.features`` order."""
        if len(values) != len(self.features):
            raise ModelError(f"expected {len(self.features)} features, got {len(values)}")
        batch = np.asarray([values], dtype=np.float32)
        try:
            (out,) = self._session.run([self._output], {self._input: batch})
        except _ORT_ERRORS as exc:
            raise ModelError(f"model {self.name} {self.version} failed: {exc}") from exc
        probability = float(np.asarray(out).reshape(-1)[0])
        if not 0.0 <= probability <= 1.0:
            raise ModelError(f"model {self.name} {self.version} returned {probability}")
        return probability
