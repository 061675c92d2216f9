"""MLLP inbox and dead letters: the table, rows for the pipeline, queries and replay for the CLI."""

from .records import (
    ACCEPTED,
    DEAD,
    REPLAYED,
    InboxEntry,
    Sender,
    find_accepted,
    get_entry,
    inbox_row,
    list_entries,
)
from .replay import replay
from .schema import InboxRow, inbox

__all__ = [
    "ACCEPTED",
    "DEAD",
    "REPLAYED",
    "InboxEntry",
    "InboxRow",
    "Sender",
    "find_accepted",
    "get_entry",
    "inbox",
    "inbox_row",
    "list_entries",
    "replay",
]
