"""Load and check vendor profiles (``vendor_profiles/*.toml``).

Profiles are package data read lazily through ``importlib.resources`` (never at import).
A profile may name a parent with ``extends = "<id>"``: the parent's tables are taken first
and the child's override them; ``[[codes]]`` and ``[[units]]`` are merged entry by entry
(same vendor code / record field, or same unit code, replaces). A broken profile raises
:class:`ProfileError`, whose message names the file and the field (pydantic location).
"""

from __future__ import annotations

import functools
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from mappers.profile_schema import Profile

__all__ = [
    "ProfileError",
    "ProfileProblem",
    "check_all",
    "load_all",
    "load_profile",
    "load_profile_file",
    "merged_code_aliases",
    "merged_unit_aliases",
    "profile_names",
]

_PACKAGE = "vendor_profiles"
_MAX_EXTENDS_DEPTH = 4


@dataclass(frozen=True, slots=True)
class ProfileProblem:
    """One reason a profile file was refused."""

    file: str
    location: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}: {self.location}" if self.location else self.file
        return f"{where}: {self.message}"


class ProfileError(ValueError):
    """A profile file could not be read or did not validate."""

    def __init__(self, problems: list[ProfileProblem]) -> None:
        self.problems = problems
        super().__init__("; ".join(str(p) for p in problems))


def _directory() -> Traversable:
    return resources.files(_PACKAGE)


def profile_names() -> list[str]:
    """Ids of the profiles shipped in ``vendor_profiles/`` (top level only)."""
    return sorted(
        p.name.removesuffix(".toml")
        for p in _directory().iterdir()
        if p.is_file() and p.name.endswith(".toml")
    )


@functools.cache
def load_profile(name: str) -> Profile:
    """Load and validate the shipped profile ``name`` (file stem). Cached."""
    return _load(name, _directory(), f"{_PACKAGE}/{name}.toml")


def load_profile_file(path: Path) -> Profile:
    """Load a profile from any file; ``extends`` resolves in the same directory."""
    return _load(path.stem, path.parent, str(path))


def load_all() -> list[Profile]:
    """Every shipped profile; the first broken one raises :class:`ProfileError`."""
    return [load_profile(n) for n in profile_names()]


def check_all() -> list[ProfileProblem]:
    """Validate every shipped profile and return all problems (empty when all are good)."""
    problems: list[ProfileProblem] = []
    for name in profile_names():
        try:
            _load(name, _directory(), f"{_PACKAGE}/{name}.toml")
        except ProfileError as exc:
            problems.extend(exc.problems)
    return problems


def merged_code_aliases(profiles: Iterable[Profile]) -> dict[tuple[str, str], str]:
    """All profiles' code aliases in one map (later profiles never silently differ)."""
    return _merge((p.code_aliases() for p in profiles), "code")


def merged_unit_aliases(profiles: Iterable[Profile]) -> dict[tuple[str, str], str]:
    """All profiles' unit aliases in one map."""
    return _merge((p.unit_aliases() for p in profiles), "unit")


def _merge(maps: Iterable[Mapping[tuple[str, str], str]], what: str) -> dict[tuple[str, str], str]:
    out: dict[tuple[str, str], str] = {}
    for m in maps:
        for k, v in m.items():
            if out.setdefault(k, v) != v:
                raise ValueError(f"profiles disagree on {what} {k}: {out[k]!r} vs {v!r}")
    return out


# -- reading -------------------------------------------------------------------


def _load(name: str, directory: Traversable | Path, label: str) -> Profile:
    data = _read_with_parents(name, directory, label, depth=0)
    if data.get("id", name) != name:
        raise ProfileError([ProfileProblem(label, "id", f"must equal the file name {name!r}")])
    data.setdefault("id", name)
    try:
        return Profile.model_validate(data)
    except ValidationError as exc:
        raise ProfileError([_problem(label, e) for e in exc.errors()]) from None


def _read_with_parents(
    name: str, directory: Traversable | Path, label: str, depth: int
) -> dict[str, Any]:
    data = _read_toml(directory / f"{name}.toml", label)
    parent = data.pop("extends", None)
    if parent is None:
        return data
    if not isinstance(parent, str) or depth >= _MAX_EXTENDS_DEPTH:
        raise ProfileError([ProfileProblem(label, "extends", "must name one parent profile")])
    parent_label = label.rsplit("/", 1)[0] + f"/{parent}.toml" if "/" in label else parent
    base = _read_with_parents(parent, directory, parent_label, depth + 1)
    base.pop("id", None)
    return _overlay(base, data)


def _read_toml(path: Traversable | Path, label: str) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ProfileError([ProfileProblem(label, "", "file not found")]) from None
    except UnicodeDecodeError as exc:
        raise ProfileError([ProfileProblem(label, "", f"not UTF-8: {exc}")]) from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ProfileError([ProfileProblem(label, "", f"invalid TOML: {exc}")]) from None


def _overlay(base: dict[str, Any], child: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in child.items():
        if key == "codes":
            out[key] = _merge_entries(base.get(key, []), value, _code_identity)
        elif key == "units":
            out[key] = _merge_entries(base.get(key, []), value, lambda e: str(e.get("code")))
        elif isinstance(value, dict) and isinstance(base.get(key), dict):
            out[key] = {**base[key], **value}
        else:
            out[key] = value
    return out


def _code_identity(entry: dict[str, Any]) -> str:
    if "code" in entry:
        return str(entry["code"])
    return f"{entry.get('record')}:{entry.get('field')}"


def _merge_entries(base: list[Any], child: list[Any], ident: Any) -> list[Any]:
    if not isinstance(child, list):
        return child  # let validation name the type error
    replaced = {ident(e) for e in child if isinstance(e, dict)}
    kept = [e for e in base if not (isinstance(e, dict) and ident(e) in replaced)]
    return kept + child


def _problem(label: str, error: Mapping[str, Any]) -> ProfileProblem:
    loc = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error["loc"])
    return ProfileProblem(label, loc.lstrip("."), str(error["msg"]))
