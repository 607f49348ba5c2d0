"""Result types of the stores' inspection and transfer methods (``list_streams``,
``store_info``, ``check_integrity``, ``inspect_schema``, ``migrate_schema``,
``export_records``/``import_records``), for type hints in code that calls them."""

from __future__ import annotations

from sqlitestream.sqlite.admin import (
    CheckFinding,
    CheckReport,
    MigrationResult,
    SchemaStatus,
    SchemaStep,
    StoreInfo,
)
from sqlitestream._core.transfer import ImportReport, SessionImport, StreamInfo

__all__ = [
    "CheckFinding",
    "CheckReport",
    "ImportReport",
    "MigrationResult",
    "SchemaStatus",
    "SchemaStep",
    "SessionImport",
    "StoreInfo",
    "StreamInfo",
]
