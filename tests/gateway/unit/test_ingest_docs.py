"""docs/hl7v2-interface.md stays true to the code: types, events, versions, error codes."""

from __future__ import annotations

import re
from pathlib import Path

from mappers.hl7v2 import MAPPERS, REJECT_CODES
from mappers.hl7v2.context import SUPPORTED_VERSIONS
from mappers.hl7v2.errors import ERROR_TEXT

DOC = (Path(__file__).resolve().parents[3] / "docs" / "hl7v2-interface.md").read_text()


def section(title: str) -> str:
    start = DOC.index(f"## {title}")
    end = DOC.find("\n## ", start + 1)
    return DOC[start : end if end > 0 else None]


def test_every_supported_type_and_event_is_documented() -> None:
    table = section("2. Supported messages")
    rows = [line.split("|")[1:3] for line in table.splitlines()
            if line.startswith("| ORU") or line.startswith("| ADT")]
    documented = {(kind.strip(), ev) for kind, events in rows
                  for ev in re.findall(r"[A-Z]\d\d", events)}
    assert documented == set(MAPPERS)


def test_versions_match() -> None:
    line = next(x for x in section("2. Supported messages").splitlines() if x.startswith("Versions"))
    assert set(re.findall(r"2(?:\.\d+)+", line)) == set(SUPPORTED_VERSIONS)


def test_error_table_matches_table_0357_texts_and_refusals() -> None:
    rows = [line.split("|") for line in section("6. Error codes").splitlines()
            if re.match(r"\| \d{3} \|", line)]
    for _, code, text, ack, *_ in rows:
        assert ERROR_TEXT[int(code)] == text.strip()
        if int(code) in REJECT_CODES:
            assert ack.strip() == "AR"
    assert {int(r[1]) for r in rows} >= REJECT_CODES


def test_every_documented_setting_exists() -> None:
    from gateway.settings import Settings

    named = set(re.findall(r"VITALGATE_([A-Z_]+[A-Z])", DOC))
    assert {"MLLP_TLS_CERT", "MLLP_ALLOW_SENDERS", "MLLP_PORT"} <= named
    assert {n.lower() for n in named} <= set(Settings.model_fields)


def test_documented_inbox_commands_exist() -> None:
    from typer.testing import CliRunner

    from gateway.cli import app

    for command in set(re.findall(r"`vitalgate inbox (\w+)", DOC)):
        result = CliRunner().invoke(app, ["inbox", command, "--help"])
        assert result.exit_code == 0, (command, result.output)
    assert set(re.findall(r"`vitalgate inbox (\w+)", DOC)) == {"list", "show", "replay"}
