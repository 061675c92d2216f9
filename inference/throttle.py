"""Write-on-change throttle for derived resources (the NEWS2 score, the risk assessment).

A derived resource is written when its signature changes (NEWS2: total and band; risk: the
probability rounded to the reporting step) or when ``interval`` has passed since the last write,
never on every incoming value.
"""

from __future__ import annotations

from collections.abc import Hashable
from datetime import datetime, timedelta

__all__ = ["ChangeThrottle"]


class ChangeThrottle:
    def __init__(self, interval: timedelta):
        self.interval = interval
        self._last: dict[Hashable, tuple[Hashable, datetime]] = {}

    def due(self, key: Hashable, signature: Hashable, at: datetime) -> bool:
        """True (and remembered as written) if the signature changed or the interval passed."""
        last = self._last.get(key)
        if last is not None and last[0] == signature and at - last[1] < self.interval:
            return False
        self._last[key] = (signature, at)
        return True

    def forget(self, key: Hashable) -> None:
        self._last.pop(key, None)
