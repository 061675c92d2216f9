"""Lossless FHIR JSON: decimals keep their written precision (``1.50`` stays ``1.50``).

Input is parsed with ``parse_float=Decimal``; output goes through orjson, which writes each
``Decimal`` back verbatim as a JSON number fragment.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import orjson

# one decoder for every call: ``json.loads(data, parse_float=...)`` builds a new decoder and
# scanner each time, about half the cost of parsing a resource (~12 of ~25 us)
_DECODER = json.JSONDecoder(parse_float=Decimal)


def loads(data: bytes | bytearray | str) -> Any:
    """``json.loads(data, parse_float=Decimal)``: the same text handling, errors included."""
    if isinstance(data, str):
        if data.startswith("\ufeff"):
            raise json.JSONDecodeError("Unexpected UTF-8 BOM (decode using utf-8-sig)", data, 0)
    elif isinstance(data, bytes | bytearray):
        data = data.decode(json.detect_encoding(data), "surrogatepass")
    else:
        raise TypeError(f"the JSON object must be str, bytes or bytearray, not {type(data).__name__}")
    return _DECODER.decode(data)


def _default(obj: Any) -> Any:
    if isinstance(obj, Decimal):
        if not obj.is_finite():
            raise TypeError(f"not a JSON number: {obj}")
        return orjson.Fragment(str(obj).encode())
    raise TypeError(f"cannot serialise {type(obj).__name__}")


def dumps(obj: Any) -> bytes:
    try:
        return orjson.dumps(obj, default=_default)
    except TypeError:
        # orjson writes no integer beyond 64 bits (a JSON number such as a 30-digit decimal
        # value parses to one); written as the Decimal it stands for, its text is kept. Only
        # the failing call pays for the walk.
        widened = _big_ints_as_decimals(obj)
        if widened is obj:
            raise
        return orjson.dumps(widened, default=_default)


_INT64 = range(-(2**63), 2**64)  # orjson writes unsigned 64-bit integers too


def _big_ints_as_decimals(obj: Any) -> Any:
    """``obj`` with every integer orjson cannot write as a Decimal; ``obj`` itself if none."""
    if type(obj) is int:
        return obj if obj in _INT64 else Decimal(obj)
    if type(obj) is dict:
        out = {k: _big_ints_as_decimals(v) for k, v in obj.items()}
        return obj if all(out[k] is v for k, v in obj.items()) else out
    if type(obj) is list:
        items = [_big_ints_as_decimals(v) for v in obj]
        return obj if all(a is b for a, b in zip(items, obj, strict=True)) else items
    return obj
