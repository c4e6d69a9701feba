"""Benchmark: the engine's own cost per run for N records, without network or Salesforce time.

A stand-in port answers Bulk jobs instantly (results built by polars from the uploaded CSV), so
what is measured is map/validate, fingerprints, state load, diff, plan, CSV, result parsing and
state commits. Three runs on one state file: a full load, a re-run with nothing changed, and a
run with 1% of the records changed.

    .venv/bin/python bench/sync_engine.py [--rows 1000000]

Targets (invariant 7): the no-change run sends nothing; the 1% run sends 1% of the records.
"""

from __future__ import annotations

import argparse
import io
import json
import resource
import tempfile
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import polars as pl

from sf_activations.sync.model import (
    BulkJobInfo,
    BulkOperation,
    FieldDescribe,
    ObjectDescribe,
    RecordOutcome,
)
from sf_activations.sync.run import run_sync_partition
from sf_activations.sync.spec import FieldMapping, SyncKey, SyncSpec
from sf_activations.sync.state import StateStore

DESCRIBE = ObjectDescribe(
    name="Account",
    label="Account",
    key_prefix="001",
    createable=True,
    updateable=True,
    deletable=True,
    fields=(
        FieldDescribe(
            name="External_Id__c",
            label="External Id",
            type="string",
            length=64,
            external_id=True,
            unique=True,
            createable=True,
            updateable=True,
        ),
        FieldDescribe(
            name="Name", label="Name", type="string", length=255, createable=True, updateable=True
        ),
        FieldDescribe(
            name="Industry", label="Industry", type="picklist", createable=True, updateable=True
        ),
        FieldDescribe(
            name="NumberOfEmployees",
            label="Employees",
            type="int",
            createable=True,
            updateable=True,
        ),
        FieldDescribe(
            name="AnnualRevenue",
            label="Revenue",
            type="currency",
            createable=True,
            updateable=True,
        ),
        FieldDescribe(
            name="Founded__c", label="Founded", type="date", createable=True, updateable=True
        ),
        FieldDescribe(
            name="Active__c", label="Active", type="boolean", createable=True, updateable=True
        ),
    ),
)

SPEC = SyncSpec(
    name="accounts",
    source_model="dim_accounts",
    sobject="Account",
    behavior="update_or_create",
    key=SyncKey("id", "External_Id__c"),
    mappings=(
        FieldMapping("name", "Name"),
        FieldMapping("industry", "Industry"),
        FieldMapping("employees", "NumberOfEmployees"),
        FieldMapping("revenue", "AnnualRevenue"),
        FieldMapping("founded", "Founded__c"),
        FieldMapping("active", "Active__c"),
    ),
)


class InstantBulk:
    """A port whose Bulk jobs succeed at once; results are built with polars, not row loops."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.results: dict[str, bytes] = {}
        self.sizes: dict[str, int] = {}
        self.records_sent = 0

    def describe(self, sobject: str, *, refresh: bool = False) -> ObjectDescribe:
        self.calls["describe"] += 1
        return DESCRIBE

    def bulk_submit(
        self,
        sobject: str,
        operation: BulkOperation,
        csv_data: bytes,
        *,
        external_id_field: str | None = None,
    ) -> str:
        self.calls["bulk_create"] += 1
        job = f"750{len(self.results):015d}"
        frame = pl.read_csv(io.BytesIO(csv_data), infer_schema=False)
        ok = frame.select(
            # Unique across jobs, as Salesforce Ids are (the engine keeps one key per Id).
            pl.format("001{}", pl.int_range(0, pl.len()) + self.records_sent).alias("sf__Id"),
            pl.lit("true").alias("sf__Created"),
            pl.all(),
        )
        self.records_sent += frame.height
        self.results[job] = ok.write_csv(quote_style="always").encode()
        self.sizes[job] = frame.height
        return job

    def bulk_wait(self, job_id: str, *, timeout_s: float = 86400.0) -> BulkJobInfo:
        self.calls["bulk_poll"] += 1
        return self.bulk_job_info(job_id)

    def bulk_job_info(self, job_id: str) -> BulkJobInfo:
        return BulkJobInfo(
            id=job_id,
            object="Account",
            operation="upsert",
            state="JobComplete",
            records_processed=self.sizes[job_id],
        )

    def bulk_results(self, job_id: str) -> tuple[bytes, bytes, bytes]:
        self.calls["bulk_results"] += 3
        return self.results[job_id], b"", b""

    def collection_upsert(
        self, sobject: str, external_id_field: str, records: Sequence[Mapping[str, Any]]
    ) -> list[RecordOutcome]:
        self.calls["collection_upsert"] += 1
        self.records_sent += len(records)
        return [
            RecordOutcome(key=str(r[external_id_field]), success=True, salesforce_id="001x")
            for r in records
        ]

    def collection_insert(
        self, sobject: str, records: Sequence[Mapping[str, Any]], *, keys: Sequence[str]
    ) -> list[RecordOutcome]:
        raise NotImplementedError

    def collection_update(
        self, sobject: str, records: Sequence[Mapping[str, Any]], *, keys: Sequence[str]
    ) -> list[RecordOutcome]:
        raise NotImplementedError

    def collection_delete(self, ids: Sequence[str]) -> list[RecordOutcome]:
        raise NotImplementedError

    def query(self, soql: str) -> list[dict[str, Any]]:
        raise NotImplementedError

    def api_calls(self) -> Mapping[str, int]:
        return dict(self.calls)


def model(rows: int) -> pl.DataFrame:
    """``rows`` synthetic accounts."""
    i = pl.int_range(0, rows, eager=True)
    return pl.DataFrame(
        {
            "id": "acct-" + i.cast(pl.String),
            "name": "Account " + i.cast(pl.String),
            "industry": pl.Series(["Tech", "Retail", "Energy", None])[i % 4],
            "employees": (i * 7) % 5000,
            "revenue": (i % 1000) * 1234.5,
            "founded": pl.date_range(pl.date(1990, 1, 1), pl.date(2020, 12, 31), "1d", eager=True)[
                i % 11000
            ],
            "active": (i % 3) == 0,
        }
    )


def main() -> None:
    """Run the three scenarios and print one JSON line per run."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    args = parser.parse_args()
    data = model(args.rows)
    changed = data.with_columns(
        pl.when(pl.int_range(0, pl.len()) % 100 == 0)
        .then(pl.col("name") + " (renamed)")
        .otherwise(pl.col("name"))
        .alias("name")
    )
    with tempfile.TemporaryDirectory() as tmp, StateStore(Path(tmp) / "state.db") as state:
        for label, frame in (("full", data), ("no_change", data), ("one_percent", changed)):
            port = InstantBulk()
            start = time.perf_counter()
            report = run_sync_partition(SPEC, frame, port, state)
            seconds = time.perf_counter() - start
            print(
                json.dumps(
                    {
                        "run": label,
                        "rows": args.rows,
                        "seconds": round(seconds, 2),
                        "sent": port.records_sent,
                        "created": report.created,
                        "unchanged": report.unchanged,
                        "jobs": len(report.bulk_job_ids),
                        "api_calls": dict(report.api_calls),
                        "phases": report.phase_seconds,
                        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024,
                    }
                )
            )


if __name__ == "__main__":
    main()
