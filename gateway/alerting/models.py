"""Which risk model the running engine uses, and noticing when the registry changes it.

At start the registry's current model is loaded (hash and signature re-checked); when the
registry is still empty, the model shipped in ``models/`` is loaded from its signed manifest
without installing it.  ``ModelSource.poll()`` is called by the consumer before each batch: it
compares the registry's ``state.json`` (size, mtime, inode) with what it last loaded, and only
then reads and verifies the new model.  A model that fails to load is logged and skipped; the
running one stays.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from inference import InferenceError, RiskModel, load_current, load_file, load_trusted_keys
from inference.registry import current_version

log = logging.getLogger(__name__)

def _shipped_dir() -> Path:
    # The wheel carries models/ as gateway/_models (pyproject force-include); a checkout has it at the top.
    packaged = Path(__file__).resolve().parents[1] / "_models"
    return packaged if packaged.is_dir() else Path(__file__).resolve().parents[2] / "models"


SHIPPED_DIR = _shipped_dir()
SHIPPED_NAME = "deterioration"


def default_keys_dir() -> Path:
    return SHIPPED_DIR / "trusted_keys"


class ModelSource:
    """The registry at ``root`` (created on first install), checked with ``keys_dir``'s keys."""

    def __init__(self, root: Path, keys_dir: Path | None = None, shipped_dir: Path | None = SHIPPED_DIR):
        self.root = Path(root)
        self.keys_dir = Path(keys_dir) if keys_dir is not None else default_keys_dir()
        self.shipped_dir = shipped_dir
        self._stamp: tuple[int, int, int] | None = None

    def _state_stamp(self) -> tuple[int, int, int] | None:
        try:
            st = os.stat(self.root / "state.json")
        except OSError:
            return None
        return st.st_size, st.st_mtime_ns, st.st_ino

    def initial(self) -> RiskModel | None:
        """The model to start with; None (rules only) when nothing verifiable is there."""
        self._stamp = self._state_stamp()
        try:
            keys = load_trusted_keys(self.keys_dir)
            if current_version(self.root) is not None:
                return load_current(self.root, keys)
            if self.shipped_dir is not None:
                base = self.shipped_dir / SHIPPED_NAME
                return load_file(base.with_suffix(".onnx"), base.with_suffix(".manifest.json"), keys)
        except (InferenceError, OSError) as exc:
            log.error("no risk model loaded, rules only: %s", exc)
        return None

    def poll(self) -> RiskModel | None:
        """A newly installed or rolled-back model to swap in, or None when nothing changed."""
        stamp = self._state_stamp()
        if stamp == self._stamp or stamp is None:
            return None
        self._stamp = stamp
        try:
            model = load_current(self.root, load_trusted_keys(self.keys_dir))
        except (InferenceError, OSError) as exc:
            log.error("registry changed but its current model is refused; the running model stays: %s", exc)
            return None
        log.info("risk model %s %s swapped in", model.name, model.version)
        return model
