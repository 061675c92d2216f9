"""Sender allowlist by MSH-3 / MSH-4 (the network allowlist by peer address is in ``server``).

A spec is a comma-separated list of rules, each matched against the first component
(namespace ID) of MSH-3 and MSH-4, exactly (HL7 identifiers are case-sensitive):

- ``APP``: that sending application, from any facility;
- ``APP/FACILITY``: that application from that facility only;
- ``*/FACILITY``: any application of that facility.

An empty spec allows every sender. A refused message gets AR (CR in enhanced mode) with
ERR 207 and is kept as a dead letter, so it shows in ``vitalgate inbox list --status dead``.
"""

from __future__ import annotations

from collections.abc import Iterable

SenderRule = tuple[str, str | None]  # (application or "*", facility or None for any)


def parse_senders(spec: str | Iterable[str]) -> tuple[SenderRule, ...]:
    items = spec.split(",") if isinstance(spec, str) else spec
    rules: list[SenderRule] = []
    for item in (i.strip() for i in items):
        if not item:
            continue
        app, sep, facility = item.partition("/")
        app, facility = app.strip(), facility.strip()
        if not app or (sep and not facility) or (app == "*" and not sep):
            raise ValueError(f"bad sender rule {item!r}: use APP, APP/FACILITY or */FACILITY")
        rules.append((app, facility if sep else None))
    return tuple(rules)


def _namespace(field: str) -> str:
    return field.split("^", 1)[0]


def sender_allowed(app: str, facility: str, rules: tuple[SenderRule, ...]) -> bool:
    """``app`` and ``facility`` are MSH-3 and MSH-4 as read (components allowed)."""
    if not rules:
        return True
    a, f = _namespace(app), _namespace(facility)
    return any((ra == "*" or ra == a) and (rf is None or rf == f) for ra, rf in rules)
