"""One MNS batch through Powertools' partial-batch machinery: every message is handled on its own, so one
bad message never fails its batch. Successes are the receipt handles that may be deleted."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from aws_lambda_powertools.utilities.batch import BasePartialProcessor

from shared.adapters.queue import Received


class MnsBatchProcessor(BasePartialProcessor):
    """Records are `Received` messages; the handler returns a `Handled` or raises."""

    def __init__(self) -> None:
        super().__init__()
        self.results: list[tuple[Received, Any]] = []
        self.failures: list[tuple[Received, BaseException]] = []

    def _prepare(self) -> None:
        self.success_messages.clear()
        self.fail_messages.clear()
        self.exceptions.clear()
        self.results, self.failures = [], []

    def _clean(self) -> None:
        pass

    def _process_record(self, record: Received) -> tuple:  # type: ignore[override]
        try:
            result = self.handler(record)
        except Exception as error:
            self.failures.append((record, error))
            return self.failure_handler(record=record, exception=sys.exc_info())
        self.results.append((record, result))
        return self.success_handler(record=record, result=result)

    async def _async_process_record(self, record: dict) -> tuple:
        raise NotImplementedError("MNS batches are processed synchronously")


def process_batch(records: list[Received], handler: Callable[[Received], Any]) -> MnsBatchProcessor:
    processor = MnsBatchProcessor()
    with processor(records=records, handler=handler):  # type: ignore[arg-type]
        processor.process()
    return processor
