"""The search package's declared public API exists and is complete."""

from __future__ import annotations

import fhir_server.search as search


def test_all_names_exist() -> None:
    for name in search.__all__:
        assert hasattr(search, name), name
    for name in ("parse_search", "extract_index", "build_select", "build_count",
                 "build_includes", "build_lastn", "search_params", "searchable_types"):
        assert name in search.__all__
