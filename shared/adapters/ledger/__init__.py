"""The order ledger (SQLAlchemy Core): SQLite, MySQL/MariaDB (PyMySQL) or PostgreSQL (psycopg 3)."""

from __future__ import annotations

from shared.adapters.ledger.ledger import DEFAULT_URL, Ledger
from shared.adapters.ledger.records import (
    ApplyResult,
    DeadLetterRecord,
    LedgerSummary,
    MigrationResult,
    OrderRecord,
    OutboxEvent,
    ReceiptRecord,
    ReportToApply,
)

__all__ = [
    "DEFAULT_URL",
    "ApplyResult",
    "DeadLetterRecord",
    "Ledger",
    "LedgerSummary",
    "MigrationResult",
    "OrderRecord",
    "OutboxEvent",
    "ReceiptRecord",
    "ReportToApply",
]
