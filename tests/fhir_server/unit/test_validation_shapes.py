"""Validation by shape (``fhir_server.core.shapes``): a resource of a shape validated before has
only its primitive values checked. It must accept exactly what full fhir.resources validation
accepts: the official R4B examples, each with primitive values swapped for good and bad ones
of the same JSON type (so the shape, and the fast path, stay the same)."""

from __future__ import annotations

import copy
import random
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from fhir.resources.R4B import get_fhir_model_class

from fhir_server.core import shapes
from fhir_server.core.resources import validate
from fhir_server.errors import FhirError
from fhir_server.storage import loads

EXAMPLES = sorted((Path(__file__).parents[2] / "data" / "r4b-examples").glob("*.json"))
VITALS = {"resourceType": "Observation", "status": "final",
          "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                                    "code": "vital-signs"}]}],
          "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
          "subject": {"reference": "Patient/p1"}, "effectiveDateTime": "2024-05-01T08:00:00Z",
          "valueQuantity": {"value": Decimal("72.0"), "unit": "/min", "system": "http://unitsofmeasure.org",
                            "code": "/min"}}
SWAPS: dict[type, list[Any]] = {
    str: ["", " ", "x", "a b", " lead", "trail ", "a\tb", "x" * 70, "2024-13-45T99:00:00Z", "2024-05-01",
          "2024-05-01T08:00:00Z", "2024-05-01T08:00:00", "urn:uuid:not-a-uuid", "0", "-1", "1.5", "true",
          "http://x y", "#", "\u0000", "Patient/p1", "http://loinc.org"],
    int: [0, -1, 1, 7, 2**31, 2**63],
    Decimal: [Decimal("0"), Decimal("-1.50"), Decimal("1E+400"), Decimal("1e-5"), Decimal("72.000")],
    bool: [True, False],
}


def leaf_paths(value: Any, path: tuple = ()) -> list[tuple]:
    """Paths of the values ``shapes.shape`` lists as leaves, in its order."""
    if isinstance(value, dict):
        return [p for k, v in value.items() if k != "resourceType" for p in leaf_paths(v, (*path, k))]
    if isinstance(value, list) and value and all(isinstance(x, dict) for x in value):
        return [p for i, x in enumerate(value) for p in leaf_paths(x, (*path, i))]
    return [path]


def swapped(res: dict, path: tuple, value: Any) -> dict:
    out = copy.deepcopy(res)
    node = out
    for k in path[:-1]:
        node = node[k]
    node[path[-1]] = value
    return out


def fully_valid(res: dict) -> bool:
    try:
        get_fhir_model_class(res["resourceType"]).model_validate(res)
    except Exception:  # noqa: BLE001 - any refusal
        return False
    return True


def accepted(res: dict) -> bool:
    try:
        validate(res)
    except FhirError:
        return False
    return True


def test_a_known_shape_takes_the_fast_path():
    validate(VITALS)
    leaves: list[Any] = []
    sig = shapes.shape(VITALS, leaves)
    assert shapes.passes("Observation", sig, leaves)
    other = swapped(VITALS, ("effectiveDateTime",), "2024-05-01T09:00:00Z")
    leaves = []
    assert shapes.passes("Observation", shapes.shape(other, leaves), leaves)
    bad = swapped(VITALS, ("effectiveDateTime",), "2024-05-01 09:00")
    leaves = []
    assert not shapes.passes("Observation", shapes.shape(bad, leaves), leaves)
    assert not accepted(bad)
    # a different JSON type is another shape (validated in full)
    leaves = []
    assert not shapes.passes("Observation", shapes.shape(swapped(VITALS, ("status",), 3), leaves), leaves)


@pytest.mark.parametrize("chunk", range(4))
def test_fast_path_accepts_exactly_what_full_validation_accepts(chunk):
    rnd = random.Random(chunk)
    files = EXAMPLES[chunk::4]
    checked = 0
    for path in files:
        res = loads(path.read_bytes())
        if not isinstance(res, dict) or not fully_valid(res):
            continue
        assert accepted(res), path.name  # first of its shape: full validation, then remembered
        paths = leaf_paths(res)
        for leaf in rnd.sample(paths, min(4, len(paths))):
            node: Any = res
            for k in leaf:
                node = node[k]
            for value in SWAPS.get(type(node), []):
                mutated = swapped(res, leaf, value)
                assert accepted(mutated) == fully_valid(mutated), (path.name, leaf, value)
                checked += 1
    for value in SWAPS[str]:
        mutated = swapped(VITALS, ("code", "coding", 0, "code"), value)
        assert accepted(mutated) == fully_valid(mutated), value
    assert checked > 200
