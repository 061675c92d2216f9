"""FHIR search: the parameter registry, index extraction, query parsing and SQL compilation.

Flow: ``registry`` (what is searchable) -> ``extract_index`` (rows written with each resource
version) and ``parse_search`` (query string -> frozen ``SearchQuery``) -> ``build_select`` /
``build_count`` / ``build_includes`` / ``build_lastn`` (SQLAlchemy Core for SQLite and
PostgreSQL). Spec: https://hl7.org/fhir/R4B/search.html
"""

from .dates import MAX_US, MIN_US, date_range, epoch_us
from .extract import extract_index, indexed_elements
from .normalize import norm_text, parse_reference
from .query import DEFAULT_COUNT, MAX_COUNT, SearchQuery, parse_search
from .query_parts import Clause, Include, SortKey
from .registry import (
    PARAM_TYPES,
    SearchParam,
    capability_search_params,
    include_names,
    revinclude_names,
    search_params,
    searchable_types,
    table_kind,
)
from .sql import build_count, build_includes, build_lastn, build_select, build_snapshot
from .ucum import UCUM_SYSTEM, canonical, canonical_unit
from .values import (
    DateValue,
    NumberValue,
    QuantityValue,
    ReferenceValue,
    StringValue,
    TextValue,
    TokenValue,
    parse_token,
)

__all__ = [
    "DEFAULT_COUNT",
    "MAX_COUNT",
    "MAX_US",
    "MIN_US",
    "PARAM_TYPES",
    "UCUM_SYSTEM",
    "Clause",
    "DateValue",
    "Include",
    "NumberValue",
    "QuantityValue",
    "ReferenceValue",
    "SearchParam",
    "SearchQuery",
    "SortKey",
    "StringValue",
    "TextValue",
    "TokenValue",
    "build_count",
    "build_includes",
    "build_lastn",
    "build_select",
    "build_snapshot",
    "canonical",
    "canonical_unit",
    "capability_search_params",
    "date_range",
    "epoch_us",
    "extract_index",
    "indexed_elements",
    "include_names",
    "norm_text",
    "parse_reference",
    "parse_search",
    "parse_token",
    "revinclude_names",
    "search_params",
    "searchable_types",
    "table_kind",
]
