"""Every name in ``inference.__all__`` exists, and every module's public API is re-exported."""

import importlib
import pkgutil

import inference


def test_all_names_resolve():
    for name in inference.__all__:
        assert hasattr(inference, name), name


def test_module_apis_reexported():
    for info in pkgutil.iter_modules(inference.__path__):
        if info.name.startswith("_") or info.ispkg:
            continue
        module = importlib.import_module(f"inference.{info.name}")
        missing = set(module.__all__) - set(inference.__all__)
        assert not missing, (info.name, missing)
