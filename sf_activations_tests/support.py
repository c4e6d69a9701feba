"""Settings shared by tests that drive the real Salesforce client against the emulator."""

from __future__ import annotations

FAST_RETRIES: dict[str, float | int] = {
    "max_attempts": 3,
    "backoff_base_s": 0.001,
    "backoff_max_s": 0.01,
    "limit_backoff_s": 0.001,
    "poll_initial_s": 0.005,
    "poll_max_s": 0.05,
}
"""``connect()`` options that keep retries and Bulk polls short (the emulator answers at once)."""
