"""The reconciliation report: where every order stands, who closed it, why failures failed, and which orders are
still open and why. Written by the sweep (JSON and CSV into REPORT_DIR) and by ``flow-receipts report``."""

from __future__ import annotations

import csv
import json
import os
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from shared.adapters.ledger import Ledger, OrderRecord
from shared.logs import mask_phone

UNRESOLVED_LIMIT = 10_000  # listed one by one; the count covers them all
CSV_COLUMNS = (
    "out_id",
    "phone",
    "submitted_at",
    "age_hours",
    "charge_attempts",
    "last_query_at",
    "last_query_answer",
    "why",
)


def build(
    ledger: Ledger,
    *,
    now: datetime,
    grace: timedelta,
    sweep: dict[str, Any] | None = None,
    submitted_from: datetime | None = None,
    submitted_to: datetime | None = None,
) -> dict[str, Any]:
    counts = ledger.reconciliation(submitted_from, submitted_to)
    unresolved = ledger.unresolved_orders(UNRESOLVED_LIMIT, submitted_from, submitted_to)
    scope = {
        "submitted_from": submitted_from.isoformat() if submitted_from else None,
        "submitted_to": submitted_to.isoformat() if submitted_to else None,
    }
    report: dict[str, Any] = {"generated_at": now.isoformat(), "scope": scope, **counts.as_dict()}
    report["unresolved_total"] = counts.orders_by_status.get("PENDING", 0)
    report["unresolved"] = [_open_order(order, now, grace) for order in unresolved]
    if sweep is not None:
        report["sweep"] = dict(sorted(sweep.items()))
    return report


def _open_order(order: OrderRecord, now: datetime, grace: timedelta) -> dict[str, Any]:
    submitted = order.submitted_at or order.created_at
    return {
        "out_id": order.out_id,
        "phone": mask_phone(order.phone),
        "submitted_at": submitted.isoformat(),
        "age_hours": round((now - submitted).total_seconds() / 3600, 2),
        "charge_attempts": order.charge_attempts,
        "last_query_at": order.last_query_at.isoformat() if order.last_query_at else None,
        "last_query_answer": order.last_query_answer,
        "why": why_open(order, now, grace),
    }


def why_open(order: OrderRecord, now: datetime, grace: timedelta) -> str:
    if order.last_query_note:
        return order.last_query_note
    submitted = order.submitted_at or order.created_at
    if now - submitted < grace:
        return "younger than the sweep's grace period: waiting for its receipt"
    return "not asked yet: the next sweep asks the status query"


def write(report: dict[str, Any], directory: Path, stem: str) -> list[Path]:
    """``<stem>.json`` (everything) and ``<stem>.csv`` (the open orders), each written whole or not at all."""
    directory.mkdir(parents=True, exist_ok=True)
    json_path, csv_path = directory / f"{stem}.json", directory / f"{stem}.csv"
    _atomic(json_path, lambda out: json.dump(report, out, ensure_ascii=False, indent=1))

    def rows(out: Any) -> None:
        writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(report.get("unresolved", []))

    _atomic(csv_path, rows, newline="")
    return [json_path, csv_path]


def _atomic(path: Path, fill: Any, newline: str | None = None) -> None:
    partial = path.with_name(f".{path.name}.partial")
    with partial.open("w", encoding="utf-8", newline=newline) as out:
        fill(out)
        out.flush()
        os.fsync(out.fileno())
    partial.replace(path)
