"""The ledger schema as version 1 shipped it, frozen, to test upgrades from it (shared/adapters/ledger/migrate.py)."""

from __future__ import annotations

from sqlalchemy import Boolean, CheckConstraint, Column, ForeignKey, Index, Integer, MetaData, String, Table, Text

from shared.adapters.ledger import schema
from shared.adapters.ledger.schema import TABLE_OPTIONS, LongText, UtcDateTime

V1_SOURCES = ["receipt", "sweep", "expiry"]
metadata_v1 = MetaData(naming_convention=schema.metadata.naming_convention)
schema.schema_version.to_metadata(metadata_v1)
schema.dead_letters.to_metadata(metadata_v1)  # unchanged since version 1

orders_v1 = Table(
    "orders",
    metadata_v1,
    Column("out_id", String(128), primary_key=True),
    Column("phone", String(32)),
    Column("status", String(16), nullable=False),
    Column("err_code", String(64)),
    Column("err_msg", String(512)),
    Column("resolved_by", String(16)),
    Column("resolved_message_id", String(128)),
    Column("submitted_at", UtcDateTime),
    Column("resolved_at", UtcDateTime),
    Column("created_at", UtcDateTime, nullable=False),
    Column("registered", Boolean, nullable=False),
    CheckConstraint("status IN ('PENDING', 'SUCCEEDED', 'FAILED', 'EXPIRED')", name="status"),
    CheckConstraint("resolved_by IS NULL OR resolved_by IN ('receipt', 'sweep', 'expiry')", name="resolved_by"),
    Index("ix_orders_status_submitted_at", "status", "submitted_at", "out_id"),
    **TABLE_OPTIONS,
)
receipts_v1 = Table(
    "receipts",
    metadata_v1,
    Column("message_id", String(128), primary_key=True),
    Column("message_type", String(64), nullable=False),
    Column("out_id", String(128), ForeignKey("orders.out_id"), nullable=False),
    Column("result", String(8), nullable=False),
    Column("err_code", String(64)),
    Column("err_msg", String(512)),
    Column("raw_body", LongText, nullable=False),
    Column("dequeue_count", Integer, nullable=False),
    Column("received_at", UtcDateTime, nullable=False),
    Column("outcome", String(16), nullable=False),
    Column("source", String(16), nullable=False),
    CheckConstraint("outcome IN ('applied', 'duplicate', 'conflict', 'orphan')", name="outcome"),
    CheckConstraint("source IN ('receipt', 'sweep', 'expiry')", name="source"),
    Index("ix_receipts_out_id", "out_id", "received_at"),
    **TABLE_OPTIONS,
)
outbox_v1 = Table(
    "outbox",
    metadata_v1,
    Column("event_id", String(36), primary_key=True),
    Column("out_id", String(128), ForeignKey("orders.out_id"), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("payload", Text, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("delivered_at", UtcDateTime),
    Column("attempts", Integer, nullable=False, default=0),
    Column("last_error", Text),
    Index("ix_outbox_delivered_at_created_at", "delivered_at", "created_at"),
    Index("ix_outbox_out_id", "out_id"),
    **TABLE_OPTIONS,
)
