"""The parts of a ``SearchQuery``: clauses (with modifiers and chains), sort keys and includes.

Spec: https://hl7.org/fhir/R4B/search.html#modifiers, #chaining, #sort, #include.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from fhir_server.errors import bad_request

from .normalize import norm_text
from .registry import SearchParam, search_params, searchable_types
from .values import (
    TextValue,
    TokenValue,
    Value,
    parse_date,
    parse_number,
    parse_quantity,
    parse_reference_value,
    parse_string,
    parse_token,
    split_escaped,
    unescape,
)

__all__ = ["Clause", "Include", "SortKey", "parse_clause", "parse_include", "parse_sort"]

# Called for an unknown parameter: raises in strict mode, records it otherwise.
Ignore = Callable[[str, str, str], None]

_MODIFIERS = {
    "string": {"exact", "contains", "missing"},
    "token": {"text", "not", "missing"},
    "uri": {"missing"},
    "date": {"missing"},
    "number": {"missing"},
    "quantity": {"missing"},
    "reference": {"missing"},
}
_RESOURCE_COLUMNS = ("_id", "_lastUpdated")  # answered from the resource table


@dataclass(frozen=True, slots=True)
class Clause:
    """One parameter occurrence: its values are OR-ed; clauses are AND-ed.

    ``name``/``raw`` are the parameter as written (for links). ``missing`` is set for
    ``:missing``; ``negate`` for ``:not``; ``chain`` holds one inner clause per possible target
    type of a chained reference (OR-ed), each on the target type's own parameter.
    """

    param: SearchParam
    modifier: str | None
    values: tuple[Value, ...]
    name: str
    raw: str
    missing: bool | None = None
    negate: bool = False
    chain: tuple[tuple[str, Clause], ...] = ()


@dataclass(frozen=True, slots=True)
class SortKey:
    param: SearchParam
    descending: bool
    raw: str


@dataclass(frozen=True, slots=True)
class Include:
    """``_include``/``_revinclude`` ``Source:param[:Target]`` (``*`` = every reference param)."""

    raw: str
    source_type: str
    params: tuple[SearchParam, ...]
    target_type: str | None


def _is_type(mod: str) -> bool:
    return mod[:1].isupper() and mod.isalpha()


def _check_modifier(p: SearchParam, mod: str | None, name: str) -> None:
    if mod is None:
        return
    if p.name in _RESOURCE_COLUMNS:
        ok = False
    elif p.type == "reference" and _is_type(mod):
        ok = not p.target_types or mod in p.target_types
    else:
        ok = mod in _MODIFIERS[p.type]
    if not ok:
        raise bad_request(
            f"Modifier :{mod} is not supported on the {p.type} parameter {p.name!r}",
            [name], code="not-supported",
        )


def _value(p: SearchParam, mod: str | None, piece: str) -> Value:
    t = p.type
    if t == "token":
        if mod == "text":
            return TextValue(norm_text(unescape(piece)))
        return TokenValue(None, unescape(piece)) if p.name == "_id" else parse_token(piece)
    if t == "uri":
        return TokenValue(None, unescape(piece))
    if t == "string":
        return parse_string(piece, mod)
    if t == "date":
        return parse_date(piece)
    if t == "number":
        return parse_number(piece)
    if t == "quantity":
        return parse_quantity(piece)
    return parse_reference_value(piece, mod if mod and _is_type(mod) else None)


def parse_clause(rt: str, name: str, raw: str, ignore: Ignore) -> Clause | None:
    """The clause for ``name=raw`` on ``rt``; None when the parameter is unknown (ignored)."""
    base_mod, dot, chained = name.partition(".")
    base, _, mod_text = base_mod.partition(":")
    p = search_params(rt).get(base)
    if p is None:
        ignore(name, raw, f"not a search parameter of {rt}")
        return None
    mod = mod_text or None
    if dot:
        return _chain(p, mod, chained, name, raw, ignore)
    _check_modifier(p, mod, name)
    if mod == "missing":
        if raw not in ("true", "false"):
            raise bad_request(f":missing takes true or false, got {raw!r}", [name])
        return Clause(p, mod, (), name, raw, missing=raw == "true")
    values = tuple(_value(p, mod, piece) for piece in split_escaped(raw, ","))
    return Clause(p, mod, values, name, raw, negate=mod == "not")


def _chain(
    p: SearchParam, mod: str | None, chained: str, name: str, raw: str, ignore: Ignore
) -> Clause | None:
    if p.type != "reference":
        raise bad_request(f"Only reference parameters can be chained, not {p.name!r}", [name])
    if "." in chained:
        raise bad_request("Only one level of chaining is supported", [name], code="not-supported")
    if mod is not None and not _is_type(mod):
        raise bad_request(f"Modifier :{mod} cannot be used in a chain", [name])
    _check_modifier(p, mod, name)
    inner_base = chained.partition(":")[0]
    types = [mod] if mod else list(p.target_types or searchable_types())
    types = [t for t in types if inner_base in search_params(t)]
    if not types:
        ignore(name, raw, f"no target of {p.key} has a parameter {inner_base!r}")
        return None
    inner = []
    for t in types:
        c = parse_clause(t, chained, raw, ignore)
        if c is not None:
            inner.append((t, c))
    return Clause(p, mod, (), name, raw, chain=tuple(inner))


def parse_sort(rt: str, raw: str, ignore: Ignore) -> tuple[SortKey, ...]:
    keys = []
    params = search_params(rt)
    for item in (s.strip() for s in raw.split(",")):
        if not item:
            continue
        desc = item.startswith("-")
        p = params.get(item.lstrip("-"))
        if p is None:
            ignore("_sort", item, f"{item.lstrip('-')!r} is not a search parameter of {rt}")
            continue
        keys.append(SortKey(p, desc, item))
    return tuple(keys)


def parse_include(rt: str, raw: str, *, reverse: bool) -> list[Include]:
    name = "_revinclude" if reverse else "_include"
    parts = raw.split(":")
    if len(parts) not in (2, 3):
        raise bad_request(f"{name} is Type:param[:targetType], got {raw!r}", [name])
    source, pname = parts[0], parts[1]
    target = parts[2] if len(parts) == 3 else None
    if not reverse and source != rt:
        raise bad_request(f"_include source must be {rt}, got {source!r}", [name])
    params = search_params(source)
    if not params:
        raise bad_request(f"{name}: {source!r} is not a searchable type", [name])
    if pname == "*":
        chosen = tuple(p for p in params.values() if p.type == "reference")
    elif pname in params and params[pname].type == "reference":
        chosen = (params[pname],)
    else:
        raise bad_request(f"{name}: {pname!r} is not a reference parameter of {source}", [name])
    if reverse and target is not None and target != rt:
        raise bad_request(f"_revinclude target must be {rt}, got {target!r}", [name])
    return [Include(raw, source, chosen, target)]
