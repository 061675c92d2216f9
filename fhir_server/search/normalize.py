"""Normalisation shared by the index extractor and the query parser, so both sides agree.

- ``norm_text``: the ``idx_string.value`` / ``idx_token.text`` form: NFKD, accents dropped,
  casefolded (https://hl7.org/fhir/R4B/search.html#string: "case- and accent-insensitive").
- ``parse_reference``: a reference string as ``(target_type, target_id, url)``.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

__all__ = ["norm_text", "parse_reference"]

_TYPE_ID = re.compile(r"(?:^|/)([A-Z][A-Za-z]+)/([A-Za-z0-9\-.]{1,64})(?:/_history/[^/]+)?$")


@lru_cache(maxsize=8192)
def norm_text(text: str) -> str:
    """Casefolded text without accents: ``"Müller"`` -> ``"muller"``."""
    if text.isascii():
        return text.lower()
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()


@lru_cache(maxsize=8192)
def parse_reference(ref: str) -> tuple[str | None, str | None, str | None]:
    """``(type, id, url)`` of a literal or canonical reference.

    ``Patient/1`` and ``Patient/1/_history/2`` give a type and id and no url. An absolute URL
    keeps its url (without a canonical ``|version``) and, when it ends in ``Type/id``, its
    type and id as well. ``urn:uuid:...`` and other URIs give only the url.
    """
    absolute = ":" in ref
    if absolute:
        ref = ref.split("|", 1)[0]
    m = _TYPE_ID.search(ref)
    if m is None or (not absolute and m.start() != 0):
        return None, None, ref if absolute else None
    return m.group(1), m.group(2), ref if absolute else None
