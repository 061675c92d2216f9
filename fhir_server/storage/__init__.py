"""Storage: the single write path (resources, index, change log, cursors) and reads.

Public API::

    store = Store(make_engine(url)); await store.start()
    written = await store.write(job)     # job(tx: WriteTx) -> T, committed with group commit
    await store.read(type, id) / vread / history / changes(after) / cursor(name)
"""

from .engine import make_engine
from .fhirjson import dumps, loads
from .migrate import upgrade
from .store import Store
from .tx import WriteTx
from .types import Change, PendingWrite, StoredVersion, Written, now_us, us_to_instant

__all__ = [
    "Change",
    "PendingWrite",
    "Store",
    "StoredVersion",
    "WriteTx",
    "Written",
    "dumps",
    "loads",
    "make_engine",
    "now_us",
    "upgrade",
    "us_to_instant",
]
