"""Measure the emulator's Bulk ingest: 1M-row upsert (insert, then update) and peak RSS.

Run: .venv/bin/python bench/emulator_org_bulk.py [rows]
"""

from __future__ import annotations

import gc
import os
import resource
import subprocess
import sys
import time

import polars as pl

from sf_activations.emulator.org import Org


def _frame(rows: int, suffix: str) -> pl.DataFrame:
    idx = pl.int_range(0, rows, eager=True)
    return pl.DataFrame(
        {
            "External_Id__c": "ext-" + idx.cast(pl.String),
            "Name": "Company " + idx.cast(pl.String) + suffix,
            "Phone": "+1 555 " + (idx % 10_000).cast(pl.String),
            "Website": "https://example.com/" + idx.cast(pl.String),
            "Industry": pl.Series(["Banking", "Energy", "Retail", "Technology"]).gather(idx % 4),
            "AnnualRevenue": (idx * 7 % 1_000_000).cast(pl.String),
            "NumberOfEmployees": (idx % 5000).cast(pl.String),
            "BillingCity": "City " + (idx % 1000).cast(pl.String),
            "BillingCountry": pl.Series(["US", "DE", "FR"]).gather(idx % 3),
            "Description": "Row " + idx.cast(pl.String) + suffix,
        }
    )


def _wide_frame(rows: int) -> pl.DataFrame:
    """20 fields: the 10 above plus 10 more address/contact fields."""
    idx = pl.int_range(0, rows, eager=True)
    extra = {
        "Fax": "+1 666 " + idx.cast(pl.String),
        "AccountNumber": "AN" + idx.cast(pl.String),
        "Site": "Site " + (idx % 97).cast(pl.String),
        "BillingStreet": idx.cast(pl.String) + " Main Street",
        "BillingState": pl.Series(["CA", "NY", "TX", "WA"]).gather(idx % 4),
        "BillingPostalCode": (10000 + idx % 89999).cast(pl.String),
        "ShippingStreet": idx.cast(pl.String) + " Dock Road",
        "ShippingCity": "Port " + (idx % 500).cast(pl.String),
        "Rating": pl.Series(["Hot", "Warm", "Cold"]).gather(idx % 3),
        "Type": pl.Series(["Prospect", "Partner"]).gather(idx % 2),
    }
    return _frame(rows, "").with_columns(**extra)


def _current_rss_mb() -> float:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    """Print seconds per phase and peak RSS."""
    rows = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    org = Org()
    first, second = _frame(rows, ""), _frame(rows, " v2")
    print(f"frames built: {rows} rows x {first.width} columns, peak RSS {_rss_mb():.0f} MB")
    for label, frame in (("upsert (all inserts)", first), ("upsert (all updates)", second)):
        start, cpu = time.perf_counter(), time.process_time()
        outcome = org.bulk_apply("Account", "upsert", frame, "External_Id__c")
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
        failed = outcome.frame()["sf__Error"].is_not_null().sum()
        print(
            f"{label}: {seconds:.2f} s (CPU {cpu:.2f} s), {failed} failed, "
            f"peak RSS {_rss_mb():.0f} MB"
        )
    start = time.perf_counter()
    n = sum(1 for _ in org.rows("Account"))
    print(f"rows() scan of {n} records: {time.perf_counter() - start:.2f} s")
    print(f"stored {org.count('Account')} Accounts; peak RSS {_rss_mb():.0f} MB")
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    # Storage is measured in a fresh process: freed frames do not always return memory to the OS.
    subprocess.run([sys.executable, __file__, str(rows), "memory"], check=True)


def memory(rows: int) -> None:
    """Store ``rows`` Accounts x 20 fields and print the resident memory that remains."""
    wide = _wide_frame(rows)
    org = Org()
    start = time.perf_counter()
    outcome = org.bulk_apply("Account", "insert", wide, None)
    seconds = time.perf_counter() - start
    del wide, outcome
    gc.collect()
    print(
        f"insert {rows} x 20 fields: {seconds:.2f} s; {org.count('Account')} stored, "
        f"current RSS {_current_rss_mb():.0f} MB (peak {_rss_mb():.0f} MB)"
    )


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[2] == "memory":
        memory(int(sys.argv[1]))
    else:
        main()
