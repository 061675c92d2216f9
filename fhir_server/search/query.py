"""``parse_search``: raw query parameters -> a frozen ``SearchQuery`` (the store never sees strings).

Semantics (https://hl7.org/fhir/R4B/search.html):
- repeated parameters are AND-ed (one ``Clause`` each); comma-separated values are OR-ed;
- modifiers: ``:missing`` (all types), ``:exact`` ``:contains`` (string), ``:text`` ``:not``
  (token), ``:[type]`` (reference); any other modifier is rejected with 400, as the spec asks;
- one level of chaining: ``subject:Patient.identifier=sys|val``;
- result parameters: ``_count`` (default 20, capped at 1000), ``_sort``, ``_include``,
  ``_revinclude``, ``_summary``, ``_total``, ``_elements``; paging state ``_offset`` and
  ``_snapshot`` (the highest ``resource.rid`` visible to the first page; see ``sql.py``).
- unknown parameters: 400 when ``strict`` (``Prefer: handling=strict``), otherwise recorded in
  ``SearchQuery.ignored`` and left out of ``to_params()`` (the self link). Empty values are
  ignored the same way. A known parameter with a bad value is always a 400.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from fhir_server.errors import FhirError, bad_request

from .query_parts import (
    Clause,
    Include,
    SortKey,
    parse_clause,
    parse_include,
    parse_sort,
)
from .registry import search_params

__all__ = ["DEFAULT_COUNT", "MAX_COUNT", "Clause", "Include", "SearchQuery", "SortKey",
           "parse_search"]

DEFAULT_COUNT = 20
MAX_COUNT = 1000
_SUMMARY = ("true", "false", "text", "data", "count")
_TOTAL = ("none", "estimate", "accurate")
# Accepted everywhere, applied by the REST layer, never part of the search itself.
_TRANSPORT = frozenset({"_format", "_pretty"})


@dataclass(frozen=True, slots=True)
class SearchQuery:
    """One parsed search of one resource type."""

    resource_type: str
    clauses: tuple[Clause, ...] = ()
    count: int = DEFAULT_COUNT
    offset: int = 0
    snapshot: int | None = None
    sort: tuple[SortKey, ...] = ()
    includes: tuple[Include, ...] = ()
    revincludes: tuple[Include, ...] = ()
    summary: str | None = None
    total: str | None = None
    elements: tuple[str, ...] = ()
    ignored: tuple[tuple[str, str], ...] = ()
    # the series params of the patient+code clauses (composite.series_of), read by the caller
    # from series_member; None: not read, and the plans do without them
    series: tuple[str, ...] | None = None

    def with_page(self, offset: int, snapshot: int | None) -> SearchQuery:
        """The same search at another page (``offset``) of the same ``snapshot``."""
        return replace(self, offset=offset, snapshot=snapshot)

    def to_params(self) -> list[tuple[str, str]]:
        """The parameters as applied, for ``self``/``next`` links (unknown ones left out)."""
        out = [(c.name, c.raw) for c in self.clauses]
        if self.sort:
            out.append(("_sort", ",".join(k.raw for k in self.sort)))
        out += [("_include", i.raw) for i in self.includes]
        out += [("_revinclude", i.raw) for i in self.revincludes]
        out.append(("_count", str(self.count)))
        if self.summary:
            out.append(("_summary", self.summary))
        if self.total:
            out.append(("_total", self.total))
        if self.elements:
            out.append(("_elements", ",".join(self.elements)))
        if self.snapshot is not None:
            out.append(("_snapshot", str(self.snapshot)))
        if self.offset:
            out.append(("_offset", str(self.offset)))
        return out


def _int(name: str, raw: str, lo: int = 0) -> int:
    try:
        v = int(raw)
    except ValueError:
        raise bad_request(f"{name} must be an integer, got {raw!r}", [name]) from None
    if v < lo:
        raise bad_request(f"{name} must be >= {lo}, got {v}", [name])
    return v


def _choice(name: str, raw: str, allowed: tuple[str, ...]) -> str:
    if raw not in allowed:
        raise bad_request(f"{name} must be one of {', '.join(allowed)}, got {raw!r}", [name])
    return raw


class _Builder:
    """Accumulates the parts of one query while the parameters are read in order."""

    def __init__(self, resource_type: str, strict: bool) -> None:
        self.rt = resource_type
        self.strict = strict
        self.fields: dict[str, object] = {}
        self.clauses: list[Clause] = []
        self.includes: list[Include] = []
        self.revincludes: list[Include] = []
        self.ignored: list[tuple[str, str]] = []

    def ignore(self, name: str, raw: str, why: str) -> None:
        if self.strict:
            raise bad_request(f"Unknown or unsupported search parameter {name!r}: {why}", [name])
        self.ignored.append((name, raw))

    def add(self, name: str, raw: str) -> None:
        if name in _TRANSPORT:
            return
        if raw == "":
            self.ignored.append((name, raw))
        elif name.startswith("_") and self._control(name, raw):
            return
        else:
            clause = parse_clause(self.rt, name, raw, self.ignore)
            if clause is not None:
                self.clauses.append(clause)

    def _control(self, name: str, raw: str) -> bool:
        f = self.fields
        if name == "_count":
            f["count"] = min(_int(name, raw), MAX_COUNT)
        elif name == "_offset":
            f["offset"] = _int(name, raw)
        elif name == "_snapshot":
            f["snapshot"] = _int(name, raw)
        elif name == "_summary":
            f["summary"] = _choice(name, raw, _SUMMARY)
        elif name == "_total":
            f["total"] = _choice(name, raw, _TOTAL)
        elif name == "_elements":
            f["elements"] = tuple(e.strip() for e in raw.split(",") if e.strip())
        elif name == "_sort":
            f["sort"] = parse_sort(self.rt, raw, self.ignore)
        elif name == "_include":
            self.includes += parse_include(self.rt, raw, reverse=False)
        elif name == "_revinclude":
            self.revincludes += parse_include(self.rt, raw, reverse=True)
        else:
            return False  # _id, _lastUpdated and unknown names go through parse_clause
        return True

    def build(self) -> SearchQuery:
        return SearchQuery(
            self.rt, tuple(self.clauses), includes=tuple(self.includes),
            revincludes=tuple(self.revincludes), ignored=tuple(self.ignored),
            **self.fields,  # type: ignore[arg-type]
        )


def parse_search(
    resource_type: str, params: Sequence[tuple[str, str]], *, strict: bool
) -> SearchQuery:
    """Parse ``params`` (in order, repeats kept) for a search of ``resource_type``.

    Raises ``FhirError`` (400) for a bad value, an unsupported modifier, or (when ``strict``)
    an unknown parameter.
    """
    if not search_params(resource_type):
        raise bad_request(f"Resource type {resource_type!r} is not searchable", code="not-supported")
    b = _Builder(resource_type, strict)
    for name, raw in params:
        try:
            b.add(name, raw)
        except FhirError:
            raise
        except ValueError as e:
            raise bad_request(f"Bad value for search parameter {name!r}: {e}", [name]) from None
    return b.build()
