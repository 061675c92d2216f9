"""Train the shipped deterioration model reproducibly: same script, same bytes.

    python scripts/train_model.py --out models/ [--signing-key key.pem] [--public-key-out PATH]

Generates synthetic physiology with a fixed seed (stable patients and scripted sepsis,
respiratory failure and hypotension), computes features with ``inference.features`` (the runtime
code), fits a logistic regression by full-batch gradient descent in float64, rounds the weights to
6 decimals (so BLAS summation order cannot change a byte) and writes:

- ``deterioration.onnx``: Sub(mean) -> Div(std) -> MatMul(w) -> Add(b) -> Sigmoid, opset 17;
- ``deterioration.manifest.json``: name, version, sha256, features, metrics, Ed25519 signature.

Signing: with ``--signing-key`` (PEM Ed25519 private key) the manifest is signed by it.  Without
it, a throwaway key is generated, its public half written to ``--public-key-out`` (default
``<out>/trusted_keys/dev.pub``) and its private half discarded: the repository never holds a
private key.  Production sites sign with their own key and replace ``dev.pub``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import onnx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from onnx import TensorProto, helper, numpy_helper

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from inference.features import FEATURES, features_from_window  # noqa: E402
from inference.registry import sign_manifest  # noqa: E402
from inference.vitals import Param, VitalSample  # noqa: E402
from inference.window import PatientWindow  # noqa: E402

MODEL_NAME = "deterioration"
MODEL_VERSION = "1.0.0"
SEED = 20261128
N_PATIENTS = 600
DURATION_MIN = 90
SNAPSHOTS_MIN = (30, 45, 60, 75, 90)
T0 = datetime(2026, 1, 1, tzinfo=UTC)
KINDS = ("stable", "sepsis", "respiratory", "hypotension")
# Effect at full severity, per parameter: (hr, rr, spo2, sbp, temp, fio2)
EFFECTS = {
    "stable": (0, 0, 0, 0, 0, 0),
    "sepsis": (35, 10, -3, -30, 2.0, 0),
    "respiratory": (20, 14, -12, 0, 0.2, 40),
    "hypotension": (30, 4, -1, -45, 0, 0),
}
NOISE = (3.0, 1.5, 0.8, 5.0, 0.05, 0.0)
PARAMS = (Param.HEART_RATE, Param.RESP_RATE, Param.SPO2, Param.SYSTOLIC_BP, Param.TEMPERATURE,
          Param.FIO2)


def simulate(rng: np.random.Generator, pid: int) -> tuple[PatientWindow, str, float]:
    """One patient: minute-by-minute vitals; returns the window, the kind and the onset minute."""
    kind = KINDS[0] if rng.random() < 0.5 else KINDS[1 + int(rng.integers(0, 3))]
    # Wide baselines: some stable patients look abnormal (AF, COPD, fever), so the task is not trivial
    base = np.array([rng.normal(80, 12), rng.normal(17, 3), min(100.0, rng.normal(96.5, 1.8)),
                     rng.normal(125, 18), rng.normal(37.0, 0.45), 21.0 if rng.random() < 0.85 else 28.0])
    onset = float(rng.uniform(20, 70))
    severity = float(rng.uniform(0.5, 1.2))
    effect = np.array(EFFECTS[kind], dtype=np.float64)
    window = PatientWindow(horizon=timedelta(minutes=DURATION_MIN + 1))
    for minute in range(DURATION_MIN + 1):
        ramp = 0.0 if kind == "stable" else min(max((minute - onset) / 30.0, 0.0), 1.0) * severity
        noise = rng.normal(0.0, 1.0, size=6) * np.array(NOISE)
        values = base + effect * ramp + noise
        values[2] = min(values[2], 100.0)
        values[5] = 21.0 + 5.0 * round((values[5] - 21.0) / 5.0)  # FiO2 is set in 5 % steps
        for param, value in zip(PARAMS, values, strict=True):
            window.add(VitalSample(f"s{pid}", param, float(value), "", T0 + timedelta(minutes=minute),
                                   "synthetic", f"s{pid}-{param.value}-{minute}", None))
    return window, kind, onset


def dataset(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rows, labels, groups = [], [], []
    for pid in range(N_PATIENTS):
        window, kind, onset = simulate(rng, pid)
        for minute in SNAPSHOTS_MIN:
            vector = features_from_window(window, T0 + timedelta(minutes=minute))
            rows.append(vector.values)
            labels.append(1.0 if kind != "stable" and minute >= onset + 5 else 0.0)
            groups.append(pid)
    return np.array(rows), np.array(labels), np.array(groups)


def fit(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    mean, std = x.mean(axis=0), x.std(axis=0)
    std[std == 0] = 1.0
    z = (x - mean) / std
    w, b = np.zeros(x.shape[1]), 0.0
    for _ in range(3000):
        p = 1.0 / (1.0 + np.exp(-(z @ w + b)))
        w -= 0.5 * (z.T @ (p - y) / len(y) + 1e-3 * w)
        b -= 0.5 * float(np.mean(p - y))
    return np.round(mean, 6), np.round(std, 6), np.round(w, 6), round(b, 6)


def auroc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Mann-Whitney U over ranks (ties averaged)."""
    order = np.argsort(scores, kind="stable")
    ranks = np.empty(len(scores))
    ranks[order] = np.arange(1, len(scores) + 1)
    for value in np.unique(scores):
        tie = scores == value
        ranks[tie] = ranks[tie].mean()
    pos, neg = labels == 1, labels == 0
    return float((ranks[pos].sum() - pos.sum() * (pos.sum() + 1) / 2) / (pos.sum() * neg.sum()))


def build_onnx(mean: np.ndarray, std: np.ndarray, w: np.ndarray, b: float) -> bytes:
    n = len(FEATURES)
    inits = [
        numpy_helper.from_array(mean.astype(np.float32), "mean"),
        numpy_helper.from_array(std.astype(np.float32), "std"),
        numpy_helper.from_array(w.astype(np.float32).reshape(n, 1), "weights"),
        numpy_helper.from_array(np.array([b], dtype=np.float32), "bias"),
    ]
    nodes = [
        helper.make_node("Sub", ["features", "mean"], ["centred"]),
        helper.make_node("Div", ["centred", "std"], ["scaled"]),
        helper.make_node("MatMul", ["scaled", "weights"], ["logit0"]),
        helper.make_node("Add", ["logit0", "bias"], ["logit"]),
        helper.make_node("Sigmoid", ["logit"], ["risk"]),
    ]
    graph = helper.make_graph(
        nodes, MODEL_NAME,
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, [None, n])],
        [helper.make_tensor_value_info("risk", TensorProto.FLOAT, [None, 1])],
        initializer=inits,
    )
    model = helper.make_model(graph, producer_name="vitalgate-train", producer_version=MODEL_VERSION,
                              opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    helper.set_model_props(model, {"name": MODEL_NAME, "version": MODEL_VERSION,
                                   "features": ",".join(FEATURES)})
    onnx.checker.check_model(model)
    return bytes(model.SerializeToString())


def train(out: Path, signing_key: Ed25519PrivateKey) -> dict[str, object]:
    rng = np.random.default_rng(SEED)
    x, y, groups = dataset(rng)
    held_out = groups % 10 >= 7  # 30 % of patients, split by patient, never by row
    mean, std, w, b = fit(x[~held_out], y[~held_out])
    z = (x[held_out] - mean) / std
    score = auroc(z @ w + b, y[held_out])
    model_bytes = build_onnx(mean, std, w, b)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{MODEL_NAME}.onnx").write_bytes(model_bytes)
    fields = {
        "name": MODEL_NAME, "version": MODEL_VERSION,
        "sha256": hashlib.sha256(model_bytes).hexdigest(),
        "features": list(FEATURES), "opset": 17, "output": "risk: probability of deterioration",
        "training": {"seed": SEED, "patients": N_PATIENTS, "rows": int(len(y)),
                     "positives": int(y.sum()), "auroc_heldout": round(score, 4),
                     "data": "synthetic physiology, see models/DATA_CARD.md"},
    }
    manifest = sign_manifest(fields, signing_key)
    text = json.dumps(manifest, sort_keys=True, indent=2) + "\n"
    (out / f"{MODEL_NAME}.manifest.json").write_text(text, encoding="utf-8")
    return manifest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("models"))
    parser.add_argument("--signing-key", type=Path, help="PEM Ed25519 private key")
    parser.add_argument("--public-key-out", type=Path,
                        help="where the throwaway key's public half goes (no --signing-key)")
    args = parser.parse_args(argv)
    if args.signing_key is not None:
        key = serialization.load_pem_private_key(args.signing_key.read_bytes(), password=None)
        if not isinstance(key, Ed25519PrivateKey):
            parser.error("--signing-key must be an Ed25519 private key")
    else:
        key = Ed25519PrivateKey.generate()
        pub_path = args.public_key_out or args.out / "trusted_keys" / "dev.pub"
        pub_path.parent.mkdir(parents=True, exist_ok=True)
        pub_path.write_bytes(key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    manifest = train(args.out, key)
    print(json.dumps({"sha256": manifest["sha256"], "training": manifest["training"]}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
