"""Progress of long work, as lines in the Dagster run log.

The engine reports each phase through its ``progress`` callback (the asset passes
``context.log.info``). A Bulk job is the one step that can run for many minutes with nothing to
say in between; ``BulkProgressLog`` turns the job info the client reads on every poll into a
line every ``every_s`` seconds: records processed so far, failed so far, time waited.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sf_activations.sync.model import BulkJobInfo

# The attribute of SalesforceClient that bulk_wait calls with each unfinished job info.
LISTENER_ATTRIBUTE = "bulk_poll_listener"


@dataclass
class BulkProgressLog:
    """Called with each poll's ``BulkJobInfo``; says a line per job at most every ``every_s``."""

    say: Callable[[str], None]
    every_s: float = 10.0
    clock: Callable[[], float] = time.monotonic
    _first_seen: dict[str, float] = field(default_factory=dict, repr=False)
    _last_said: dict[str, float] = field(default_factory=dict, repr=False)

    def __call__(self, info: BulkJobInfo) -> None:
        """Report ``info`` if the job has been quiet for ``every_s`` seconds."""
        now = self.clock()
        first = self._first_seen.setdefault(info.id, now)
        if now - self._last_said.get(info.id, first) < self.every_s:
            return
        self._last_said[info.id] = now
        self.say(
            f"bulk job {info.id} ({info.operation} {info.object}) {info.state}: "
            f"{info.records_processed:,} records processed so far, "
            f"{info.records_failed:,} failed, waiting {now - first:.0f}s"
        )


def attach_bulk_progress(client: Any, listener: Callable[[BulkJobInfo], None]) -> bool:
    """Hook ``listener`` into the client's Bulk polling; False if the client offers no hook."""
    if not hasattr(client, LISTENER_ATTRIBUTE):
        return False
    setattr(client, LISTENER_ATTRIBUTE, listener)
    return True
