"""``vitalgate model list|install|rollback``: the signed risk-model registry (registered in ``gateway.cli``).

The registry lives under ``VITALGATE_MODEL_DIR`` (``--model-dir``); manifests are checked against
the Ed25519 keys in ``VITALGATE_TRUSTED_KEYS_DIR`` (``--trusted-keys``; default the repository's
``models/trusted_keys``).  ``install`` takes a file path or an http(s) URL for the model, and the
manifest next to it (``name.onnx`` → ``name.manifest.json``) unless ``--manifest`` names another.
A running node notices the registry's change before its next batch and swaps the model in
without dropping an event; a refused model (unsigned, untrusted key, bad hash, older version)
changes nothing and the running model stays.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Annotated
from urllib.parse import urlparse

import typer
from rich.console import Console
from rich.table import Table

from inference import InferenceError, install, list_models, load_trusted_keys, rollback

from .alerting.models import default_keys_dir
from .settings import Settings

__all__ = ["model_app"]

model_app = typer.Typer(help="Signed risk models: list, install, roll back.", no_args_is_help=True)
_out = Console()
_err = Console(stderr=True)
MAX_DOWNLOAD = 256 << 20

DirOpt = Annotated[Path | None, typer.Option("--model-dir", help="Registry directory [VITALGATE_MODEL_DIR]")]
KeysOpt = Annotated[Path | None, typer.Option("--trusted-keys", help="Directory of *.pub Ed25519 keys "
                                              "[VITALGATE_TRUSTED_KEYS_DIR]")]


def _root(model_dir: Path | None) -> Path:
    return model_dir if model_dir is not None else Settings().model_dir


def _keys_dir(keys: Path | None) -> Path:
    return keys or Settings().trusted_keys_dir or default_keys_dir()


def _fail(message: str) -> typer.Exit:
    _err.print(f"[red]error:[/red] {message}")
    return typer.Exit(1)


@model_app.command("list")
def list_cmd(model_dir: DirOpt = None) -> None:
    """Installed models; * marks the current one, (previous) the rollback target."""
    root = _root(model_dir)
    try:
        models = list_models(root)
    except InferenceError as exc:
        raise _fail(str(exc)) from exc
    if not models:
        _out.print(f"no model installed in {root}; the node runs the model shipped in models/")
        return
    table = Table("", "name", "version", "sha256", "path")
    for m in models:
        mark = "*" if m.current else "(previous)" if m.previous else ""
        table.add_row(mark, m.name, m.version, m.sha256[:16], str(m.path))
    _out.print(table)


def _manifest_for(source: str) -> str:
    """``deterioration.onnx`` → ``deterioration.manifest.json`` (also for a URL's path)."""
    if source.endswith(".onnx"):
        return source[: -len(".onnx")] + ".manifest.json"
    return source + ".manifest.json"


def _fetch(source: str, into: Path) -> Path:
    """A local path as is; an http(s) URL downloaded (size-capped) into ``into``."""
    scheme = urlparse(source).scheme
    if scheme in ("", "file"):
        path = Path(urlparse(source).path if scheme == "file" else source)
        if not path.is_file():
            raise _fail(f"{source}: no such file")
        return path
    if scheme not in ("http", "https"):
        raise _fail(f"{source}: only files and http(s) URLs can be installed")
    import httpx

    target = into / Path(urlparse(source).path).name
    try:
        with httpx.stream("GET", source, timeout=30.0, follow_redirects=True) as response:
            response.raise_for_status()
            size = 0
            with target.open("wb") as handle:
                for chunk in response.iter_bytes():
                    size += len(chunk)
                    if size > MAX_DOWNLOAD:
                        raise _fail(f"{source}: larger than {MAX_DOWNLOAD >> 20} MiB")
                    handle.write(chunk)
    except httpx.HTTPError as exc:
        raise _fail(f"{source}: download failed: {exc}") from exc
    return target


@model_app.command("install")
def install_cmd(
    source: Annotated[str, typer.Argument(help="Model file (.onnx) or http(s) URL")],
    manifest: Annotated[str | None, typer.Option(help="Signed manifest file or URL (default: next to the model)")]
    = None,
    model_dir: DirOpt = None,
    trusted_keys: KeysOpt = None,
) -> None:
    """Verify (Ed25519 signature, SHA-256, newer version) and install a model as current."""
    root = _root(model_dir)
    with tempfile.TemporaryDirectory(prefix="vitalgate-model-") as tmp:
        model_path = _fetch(source, Path(tmp))
        manifest_path = _fetch(manifest or _manifest_for(source), Path(tmp))
        try:
            root.mkdir(parents=True, exist_ok=True)
            info = install(root, model_path, manifest_path, load_trusted_keys(_keys_dir(trusted_keys)))
        except (InferenceError, OSError) as exc:
            raise _fail(f"model refused, nothing changed: {exc}") from exc
    _out.print(f"installed {info.name} {info.version} (sha256 {info.sha256[:16]}) as current in {root}")


@model_app.command("rollback")
def rollback_cmd(model_dir: DirOpt = None) -> None:
    """Make the kept previous version current again."""
    root = _root(model_dir)
    try:
        info = rollback(root)
    except InferenceError as exc:
        raise _fail(str(exc)) from exc
    _out.print(f"rolled back: {info.name} {info.version} is current in {root}")
