"""Differential tests against python-hl7 (``hl7``) plus robustness properties.

How the comparison is defined:
- Input is normalised first (trailing whitespace stripped, as python-hl7 does): segment
  ends ``\\r\\n`` and ``\\n`` become ``\\r`` (python-hl7
  splits on ``\\r`` only, so ``\\n``-separated input would be one long segment there), and
  batch files go through ``hl7.parse_file`` (FHS) or ``hl7.parse_batch`` (BHS); the wrapper
  segments are compared only as far as both sides return messages.
- We compare raw (still escaped) field text: ``str(field)`` on python-hl7's side, which
  re-joins repetitions/components with the message's own separators, against ``seg[n]`` on
  ours, for every field of every segment, MSH-1 and MSH-2 included.
- python-hl7 0.4.5 does not unescape while parsing and keeps ``\\.br\\`` verbatim (checked:
  it does not turn it into ``\\r``), so raw values are comparable one to one. Components are
  compared through our ``get`` against python-hl7's nested lists for the first repetition.
"""

import contextlib
from pathlib import Path

import hl7
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mappers.hl7v2 import HL7Error, HL7ParseError, MappingContext, map_message, parse, parse_batch

SAMPLES = sorted(Path("/work/shared/samples/hl7v2").glob("*.hl7"))
GOOD = [p for p in SAMPLES if "bad_batch" not in p.name]


def normalise(text: str) -> str:
    return text.replace("\r\n", "\r").replace("\n", "\r").strip()


def compare(text: str) -> None:
    ours = parse_batch(text)
    if text.startswith("FHS"):
        theirs_msgs = [m for batch in hl7.parse_file(text) for m in batch]
    elif text.startswith("BHS"):
        theirs_msgs = list(hl7.parse_batch(text))
    else:
        theirs_msgs = [hl7.parse(text)]
    assert len(ours) == len(theirs_msgs)
    for mine, other in zip(ours, theirs_msgs, strict=True):
        assert len(mine) == len(other)
        for seg, pseg in zip(mine, other, strict=True):
            assert len(seg) == len(pseg), seg.name
            for n in range(len(seg)):
                assert seg[n] == str(pseg[n]), (seg.name, n)


@pytest.mark.parametrize("path", GOOD, ids=lambda p: p.name)
def test_every_sample_matches_python_hl7(path: Path) -> None:
    compare(normalise(path.read_text(encoding="latin-1")))


def test_components_match_python_hl7() -> None:
    text = normalise((SAMPLES[0].parent / "python-hl7_sample_hl7_ORU_R01.hl7").read_text())
    pid, ppid = parse(text).segment("PID"), hl7.parse(text).segment("PID")
    assert pid is not None
    assert pid.get(5, 1) == str(ppid[5][0][0]) == "EVERYWOMAN"
    assert pid.get(11, 3) == str(ppid[11][0][2]) == "STATESVILLE"


TEXT = st.text(alphabet="ABCxyz019 .-/", max_size=6)
ESCAPED = st.sampled_from(["\\F\\", "\\S\\", "\\.br\\", "\\X41\\", '""'])
SUB = st.lists(st.one_of(TEXT, ESCAPED), min_size=1, max_size=3).map("&".join)
COMP = st.lists(SUB, min_size=1, max_size=3).map("^".join)
FIELD = st.lists(COMP, min_size=1, max_size=3).map("~".join)
SEGMENT = st.tuples(st.sampled_from(["PID", "OBX", "OBR", "ZXY", "NTE"]),
                    st.lists(FIELD, max_size=10)).map(lambda t: "|".join([t[0], *t[1]]))


@settings(max_examples=120, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(SEGMENT, max_size=8), st.sampled_from(["\r", "\n", "\r\n"]))
def test_generated_messages_match_python_hl7(segments: list[str], end: str) -> None:
    text = end.join(["MSH|^~\\&|APP|FAC|||20240101||ORU^R01|1|P|2.5", *segments]) + end
    compare(normalise(text))


def mutate(data: bytes, edits: list[tuple[int, int, int]]) -> bytes:
    buf = bytearray(data)
    for kind, pos, byte in edits:
        if not buf:
            break
        pos %= len(buf)
        if kind == 0:
            buf[pos] = byte
        elif kind == 1:
            buf.insert(pos, byte)
        else:
            del buf[pos]
    return bytes(buf)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=300))
def test_random_bytes_only_raise_parse_error(data: bytes) -> None:
    for fn in (parse, parse_batch):
        with contextlib.suppress(HL7ParseError):
            fn(data)


EDITS = st.lists(st.tuples(st.integers(0, 2), st.integers(0, 10_000), st.integers(0, 255)),
                 min_size=1, max_size=6)


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(SAMPLES), EDITS)
def test_mutated_samples_only_raise_hl7_errors(path: Path, edits: list[tuple[int, int, int]]
                                               ) -> None:
    data = mutate(path.read_bytes(), edits)
    ctx = MappingContext(accepted_processing_ids=frozenset({"P", "T", "D", ""}))
    with contextlib.suppress(HL7Error):
        for msg in parse_batch(data):
            map_message(msg, ctx)


def naive_get(field: str, comp: int, sub: int, rep: int) -> str:
    """Reference: split every level, missing parts are empty."""
    reps = field.split("~") if field else [""]
    value = reps[rep - 1] if rep <= len(reps) else ""
    if comp:
        comps = value.split("^")
        value = comps[comp - 1] if comp <= len(comps) else ""
        if sub:
            subs = value.split("&")
            value = subs[sub - 1] if sub <= len(subs) else ""
    return value


@settings(max_examples=300)
@given(FIELD, st.integers(0, 4), st.integers(0, 3), st.integers(1, 4))
def test_get_matches_a_naive_split(field: str, comp: int, sub: int, rep: int) -> None:
    seg = parse("MSH|^~\\&|A||||||ORU^R01|1|P|2.5\rOBX|" + field + "\r").segments[1]
    assert seg.get(1, comp, sub if comp else 0, rep) == naive_get(field, comp, sub if comp else 0, rep)
