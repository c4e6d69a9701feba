"""Benchmark: Update Only keyed on Contact.Email (records found by SOQL lookups) on the emulator.

N Contacts are created first (an ``update_or_create`` sync keyed on ``External_Id__c``). Then an
``update_only`` sync keyed on ``Email`` writes a Title to all of them, three times on one state:
the first run looks every key up (a Bulk API query scan, since short REST queries would take
too many calls), the second changes 1% of the rows (no lookup: each key kept the record it
matched), the third changes nothing. Prints wall time, API calls by kind and records sent.

    .venv/bin/python bench/update_only_lookup.py [--rows 100000]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import polars as pl

from sf_activations.emulator.testing import running_emulator
from sf_activations.salesforce import connect, credentials_from_connection_file
from sf_activations.sync.report import SyncReport
from sf_activations.sync.run import run_sync_partition
from sf_activations.sync.spec import FieldMapping, SyncKey, SyncSpec
from sf_activations.sync.state import StateStore

CREATE = SyncSpec(
    name="contacts",
    source_model="contacts",
    sobject="Contact",
    behavior="update_or_create",
    key=SyncKey("id", "External_Id__c"),
    mappings=(FieldMapping("last_name", "LastName"), FieldMapping("email", "Email")),
)
ENRICH = SyncSpec(
    name="enrich",
    source_model="enrichment",
    sobject="Contact",
    behavior="update_only",
    key=SyncKey("email", "Email"),
    mappings=(FieldMapping("title", "Title"),),
)


def _line(label: str, seconds: float, report: SyncReport) -> str:
    calls = ", ".join(f"{k} {v}" for k, v in sorted(report.api_calls.items()))
    sent = report.created + report.updated + report.rejected
    return (
        f"{label:<14} {seconds:6.2f} s  sent {sent:>7}  updated {report.updated:>7}  "
        f"unchanged {report.unchanged:>7}  rejected {report.rejected}  calls: {calls}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    n = parser.parse_args().rows
    people = pl.DataFrame(
        {
            "id": [f"c{i}" for i in range(n)],
            "last_name": [f"Person {i}" for i in range(n)],
            "email": [f"person{i}@example.com" for i in range(n)],
        }
    )
    # The vendor writes some addresses in another case: matched as SOQL compares, ignoring it.
    enrichment = pl.DataFrame(
        {
            "email": [
                f"Person{i}@Example.com" if i % 3 == 0 else f"person{i}@example.com"
                for i in range(n)
            ],
            "title": [f"Title {i % 50}" for i in range(n)],
        }
    )
    with tempfile.TemporaryDirectory() as tmp, running_emulator(state_dir=Path(tmp) / "org") as em:
        creds = credentials_from_connection_file(em.connection_file, "jwt")
        with connect(creds) as client, StateStore(Path(tmp) / "state.db") as state:
            started = time.perf_counter()
            run_sync_partition(CREATE, people, client, state)
            print(f"{n} contacts created in {time.perf_counter() - started:.1f} s")
            changed = enrichment.with_columns(
                pl.when(pl.int_range(pl.len()) % 100 == 7)
                .then(pl.lit("Changed"))
                .otherwise(pl.col("title"))
                .alias("title")
            )
            for label, frame in (
                ("first run", enrichment),
                ("1% changed", changed),
                ("no change", changed),
            ):
                started = time.perf_counter()
                report = run_sync_partition(ENRICH, frame, client, state)
                print(_line(label, time.perf_counter() - started, report))


if __name__ == "__main__":
    main()
