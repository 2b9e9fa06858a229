"""The ledger's tables: a stable schema users may query with SQL (DESIGN.md, "The ledger")."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
)
from sqlalchemy.dialects import mysql

from shared.adapters.ledger.records import MESSAGE_ID_MAX, MESSAGE_TYPE_MAX, OUT_ID_MAX, PHONE_MAX, require_aware
from shared.domain.orders import Outcome, Source, Status

ERR_CODE_MAX = 64
ERR_MSG_MAX = 512
STATUS_MAX = 16
RESULT_MAX = 8
PRODUCT_MAX = 64
CHARGE_ID_MAX = 64
NOTE_MAX = 512


class UtcDateTime(TypeDecorator[datetime]):
    """Aware UTC in Python, naive UTC with microseconds in the database (DATETIME(6) on MySQL)."""

    impl = DateTime
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> Any:
        if dialect.name in ("mysql", "mariadb"):
            return dialect.type_descriptor(mysql.DATETIME(fsp=6))
        return dialect.type_descriptor(DateTime())

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return require_aware(value, "datetime").astimezone(timezone.utc).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else value.replace(tzinfo=timezone.utc)


# Raw bodies up to 64 KB of characters: MEDIUMTEXT on MySQL (TEXT stops at 64 KB of bytes).
LongText = Text().with_variant(mysql.MEDIUMTEXT(), "mysql", "mariadb")


def _one_of(column: str, values: list[str]) -> str:
    return f"{column} IN ({', '.join(repr(value) for value in values)})"


STATUSES = [status.value for status in Status]
OUTCOMES = [outcome.value for outcome in Outcome]
SOURCES = [source.value for source in Source]

# Byte-wise comparison on MySQL too, so keys compare as on PostgreSQL and SQLite ("A1" != "a1").
TABLE_OPTIONS = {"mysql_engine": "InnoDB", "mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_bin"}

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

schema_version = Table(
    "schema_version",
    metadata,
    Column("version", Integer, primary_key=True, autoincrement=False),
    Column("description", String(200), nullable=False),
    Column("applied_at", UtcDateTime, nullable=False),
    **TABLE_OPTIONS,
)

orders = Table(
    "orders",
    metadata,
    Column("out_id", String(OUT_ID_MAX), primary_key=True),
    Column("phone", String(PHONE_MAX)),
    Column("status", String(STATUS_MAX), nullable=False),
    Column("err_code", String(ERR_CODE_MAX)),
    Column("err_msg", String(ERR_MSG_MAX)),
    Column("resolved_by", String(STATUS_MAX)),
    Column("resolved_message_id", String(MESSAGE_ID_MAX)),  # the receipt (or sweep answer) that resolved it
    Column("submitted_at", UtcDateTime),  # NULL for an order first seen in a receipt (unregistered)
    Column("resolved_at", UtcDateTime),
    Column("created_at", UtcDateTime, nullable=False),
    Column("registered", Boolean, nullable=False),
    # Placing the top-up (flow-receipts charge; NULL / 0 when the business placed it itself).
    Column("product", String(PRODUCT_MAX)),  # Charge's Grade or CreateCdpOrder's OfferId
    Column("flow_api", String(STATUS_MAX)),  # charge | cdp
    Column("charge_id", String(CHARGE_ID_MAX)),  # the provider's ChargeId / OrderId
    Column("charge_attempts", Integer, nullable=False, server_default="0"),  # flow API calls started
    Column("last_charge_at", UtcDateTime),
    # The sweep's last status query (why an order is still unresolved).
    Column("last_query_at", UtcDateTime),
    Column("last_query_answer", String(STATUS_MAX)),  # SUCCEEDED | FAILED | STILL_PENDING | NOT_FOUND | ERROR
    Column("last_query_note", String(NOTE_MAX)),
    CheckConstraint(_one_of("status", STATUSES), name="status"),
    CheckConstraint(f"resolved_by IS NULL OR {_one_of('resolved_by', SOURCES)}", name="resolved_by"),
    # The sweep pages through PENDING orders by (submitted_at, out_id): keyset pagination on this index.
    Index("ix_orders_status_submitted_at", "status", "submitted_at", "out_id"),
    **TABLE_OPTIONS,
)

receipts = Table(
    "receipts",
    metadata,
    Column("message_id", String(MESSAGE_ID_MAX), primary_key=True),
    Column("message_type", String(MESSAGE_TYPE_MAX), nullable=False),
    Column("out_id", String(OUT_ID_MAX), ForeignKey("orders.out_id"), nullable=False),
    Column("result", String(RESULT_MAX), nullable=False),
    Column("err_code", String(ERR_CODE_MAX)),
    Column("err_msg", String(ERR_MSG_MAX)),
    Column("raw_body", LongText, nullable=False),
    Column("dequeue_count", Integer, nullable=False),
    Column("received_at", UtcDateTime, nullable=False),
    Column("outcome", String(STATUS_MAX), nullable=False),
    Column("source", String(STATUS_MAX), nullable=False),
    CheckConstraint(_one_of("outcome", OUTCOMES), name="outcome"),
    CheckConstraint(_one_of("source", SOURCES), name="source"),
    Index("ix_receipts_out_id", "out_id", "received_at"),
    **TABLE_OPTIONS,
)

dead_letters = Table(
    "dead_letters",
    metadata,
    Column("message_id", String(MESSAGE_ID_MAX), primary_key=True),
    Column("message_type", String(MESSAGE_TYPE_MAX)),
    Column("raw_body", LongText, nullable=False),
    Column("reason", Text, nullable=False),
    Column("dequeue_count", Integer, nullable=False),
    Column("first_seen_at", UtcDateTime, nullable=False),
    Column("replayed_at", UtcDateTime),
    Index("ix_dead_letters_first_seen_at", "first_seen_at"),
    **TABLE_OPTIONS,
)

outbox = Table(
    "outbox",
    metadata,
    Column("event_id", String(36), primary_key=True),
    Column("out_id", String(OUT_ID_MAX), ForeignKey("orders.out_id"), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("payload", Text, nullable=False),  # JSON text
    Column("created_at", UtcDateTime, nullable=False),
    Column("delivered_at", UtcDateTime),
    Column("attempts", Integer, nullable=False, default=0),
    Column("last_error", Text),
    Column("next_attempt_at", UtcDateTime),  # redelivery backoff; NULL: due now
    Column("rejected_at", UtcDateTime),  # the webhook refused it for good (4xx): kept for a human, not retried
    # Undelivered events oldest first: WHERE delivered_at IS NULL ORDER BY created_at.
    Index("ix_outbox_delivered_at_created_at", "delivered_at", "created_at"),
    Index("ix_outbox_out_id", "out_id"),
    **TABLE_OPTIONS,
)

# One row per sweep: its lease (no two sweeps at once) and its cursor (a stopped sweep resumes, skipping nothing).
sweep_state = Table(
    "sweep_state",
    metadata,
    Column("name", String(32), primary_key=True),
    Column("holder", String(128)),  # who holds the lease (NULL: free)
    Column("lease_expires_at", UtcDateTime),
    Column("cycle_id", String(36)),  # the cycle in progress (NULL: none; the next run starts one)
    Column("cycle_started_at", UtcDateTime),  # the cycle's "now": its window is computed from it
    Column("phase", String(16)),  # the step the cycle is at
    Column("cursor_submitted_at", UtcDateTime),  # keyset position: the last order done
    Column("cursor_out_id", String(OUT_ID_MAX)),
    Column("counts", Text),  # JSON: what the cycle did so far (for its report)
    Column("last_finished_at", UtcDateTime),
    Column("updated_at", UtcDateTime, nullable=False),
    **TABLE_OPTIONS,
)

LEDGER_TABLES = (orders, receipts, dead_letters, outbox, sweep_state)
