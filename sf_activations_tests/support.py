"""Settings and small helpers shared by the tests (the Salesforce client's fast options, a
deterministic clock and string frames for the emulated org)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import polars as pl

FAST_RETRIES: dict[str, float | int] = {
    "max_attempts": 3,
    "backoff_base_s": 0.001,
    "backoff_max_s": 0.01,
    "limit_backoff_s": 0.001,
    "poll_initial_s": 0.005,
    "poll_max_s": 0.05,
}
"""``connect()`` options that keep retries and Bulk polls short (the emulator answers at once)."""


class Clock:
    """A deterministic clock: one second per reading, from ``start``."""

    def __init__(self, start: datetime = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)) -> None:
        self.now = start

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=1)
        return self.now


def strings(**columns: list[str]) -> pl.DataFrame:
    """A frame of String columns (what a Bulk upload parses into)."""
    return pl.DataFrame(columns, schema=dict.fromkeys(columns, pl.String))
