"""Lossless FHIR JSON: decimals keep their written precision (``1.50`` stays ``1.50``).

Input is parsed with ``parse_float=Decimal``; output goes through orjson, which writes each
``Decimal`` back verbatim as a JSON number fragment.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import orjson


def loads(data: bytes | str) -> Any:
    return json.loads(data, parse_float=Decimal)


def _default(obj: Any) -> Any:
    if isinstance(obj, Decimal):
        if not obj.is_finite():
            raise TypeError(f"not a JSON number: {obj}")
        return orjson.Fragment(str(obj).encode())
    raise TypeError(f"cannot serialise {type(obj).__name__}")


def dumps(obj: Any) -> bytes:
    return orjson.dumps(obj, default=_default)
