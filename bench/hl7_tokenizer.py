"""Tokenizer benchmark: microseconds per 10-OBX ORU^R01 message, same messages, same run.

Prints JSON: our ``mappers.hl7v2.parse`` (bytes in, as from MLLP), python-hl7 ``hl7.parse``
and hl7apy ``parse_message`` (both given text, their cheapest input), plus our parse+map to
FHIR dicts for the latency budget. Best-of-N rounds, each round over every message.

    .venv/bin/python bench/hl7_tokenizer.py [--messages 200] [--rounds 7]
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import statistics
import time
from collections.abc import Callable
from typing import Any
from zoneinfo import ZoneInfo

CODES = [("147842", "MDC_ECG_HEART_RATE", "264864", "MDC_DIM_BEAT_PER_MIN"),
         ("150456", "MDC_PULS_OXIM_SAT_O2", "262688", "MDC_DIM_PERCENT"),
         ("151562", "MDC_RESP_RATE", "264928", "MDC_DIM_RESP_PER_MIN"),
         ("150021", "MDC_PRESS_BLD_NONINV_SYS", "266016", "MDC_DIM_MMHG"),
         ("150022", "MDC_PRESS_BLD_NONINV_DIA", "266016", "MDC_DIM_MMHG"),
         ("150023", "MDC_PRESS_BLD_NONINV_MEAN", "266016", "MDC_DIM_MMHG"),
         ("150344", "MDC_TEMP", "268192", "MDC_DIM_DEGC"),
         ("149530", "MDC_PULS_OXIM_PULS_RATE", "264864", "MDC_DIM_BEAT_PER_MIN"),
         ("150448", "MDC_PULS_OXIM_PERF_REL", "262656", "MDC_DIM_DIMLESS"),
         ("151708", "MDC_AWAY_CO2_ET", "266016", "MDC_DIM_MMHG")]


def message(rng: random.Random, n: int) -> bytes:
    """A PCD-01 style ORU^R01 with PID, PV1, OBR and exactly 10 OBX."""
    ts = f"20260101{rng.randrange(24):02d}{rng.randrange(60):02d}{rng.randrange(60):02d}"
    lines = [f"MSH|^~\\&|MONITOR^0012210000000001^EUI-64|ICU|||{ts}+0000||ORU^R01^ORU_R01|"
             f"MSG{n:08d}|P|2.6|||AL|NE||UNICODE UTF-8",
             f"PID|||MRN{rng.randrange(10**6)}^^^HOSP^MR||Doe^Jane^^^^^L||19700102|F",
             f"PV1||I|ICU^{rng.randrange(40)}^1",
             f"OBR|1|||69965^MDC_DEV_MON_PHYSIO_MULTI_PARAM_MDS^MDC|||{ts}"]
    for i, (code, refid, unit, unit_ref) in enumerate(CODES, start=1):
        value = f"{rng.uniform(10, 150):.1f}"
        lines.append(f"OBX|{i}|NM|{code}^{refid}^MDC|1.1.1.{i}|{value}|{unit}^{unit_ref}^MDC|||||F"
                     f"|||{ts}||||0012210000000001^^0012210000000001^EUI-64")
    return ("\r".join(lines) + "\r").encode()


def per_message_us(fn: Callable[[Any], object], inputs: list[Any], rounds: int) -> dict[str, float]:
    times = []
    for _ in range(rounds):
        start = time.perf_counter_ns()
        for item in inputs:
            fn(item)
        times.append((time.perf_counter_ns() - start) / len(inputs) / 1000)
    return {"best_us": round(min(times), 2), "median_us": round(statistics.median(times), 2)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()

    import hl7
    from hl7apy.parser import parse_message

    from mappers.hl7v2 import MappingContext, map_message, parse

    rng = random.Random(42)
    raw = [message(rng, n) for n in range(args.messages)]
    text = [m.decode() for m in raw]
    ctx = MappingContext(site_tz=ZoneInfo("Europe/Berlin"))
    few = text[: max(10, args.messages // 10)]  # hl7apy is slow; fewer messages, same shape
    results = {
        "vitalgate_parse": per_message_us(parse, raw, args.rounds),
        "vitalgate_parse_and_map": per_message_us(lambda m: map_message(parse(m), ctx), raw,
                                                  args.rounds),
        "python_hl7_parse": per_message_us(hl7.parse, text, max(3, args.rounds // 2)),
        "hl7apy_parse_message": per_message_us(parse_message, few, 3),
    }
    ours = results["vitalgate_parse"]["best_us"]
    print(json.dumps({
        "message": "ORU^R01, 10 OBX, PID, PV1, OBR", "bytes": len(raw[0]),
        "messages": args.messages, "python": platform.python_version(),
        "results": results,
        "speedup_vs_python_hl7": round(results["python_hl7_parse"]["best_us"] / ours, 1),
        "speedup_vs_hl7apy": round(results["hl7apy_parse_message"]["best_us"] / ours, 1),
        "target_us": 15,
    }, indent=2))


if __name__ == "__main__":
    main()
