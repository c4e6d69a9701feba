"""Progress of long work reaches the Dagster run log: engine phases and running Bulk jobs."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from sf_activations.config import load_project
from sf_activations.defs import SalesforceResource, build_definitions
from sf_activations.defs.progress import BulkProgressLog
from sf_activations.demo import demo_org, emulator_environment
from sf_activations.demo_project import DEMO_PROJECT_DIR
from sf_activations.emulator.server import EmulatorServer
from sf_activations.sync.model import BulkJobInfo
from sf_activations.warehouse.duckdb import DuckDBWarehouse

ACCOUNTS_SYNC = dg.AssetKey(["salesforce", "salesforce_accounts"])


def info(processed: int, state: str = "InProgress") -> BulkJobInfo:
    return BulkJobInfo(
        id="750000000000001AAA",
        object="Account",
        operation="upsert",
        state=state,
        records_processed=processed,
        records_failed=processed // 10,
    )


def test_bulk_progress_says_a_line_per_interval() -> None:
    now = [100.0]
    lines: list[str] = []
    log = BulkProgressLog(lines.append, every_s=10.0, clock=lambda: now[0])
    for t, processed in [(0, 0), (4, 1000), (10, 2500), (15, 4000), (21, 6000)]:
        now[0] = 100.0 + t
        log(info(processed))
    # A line at 10 s and at 21 s (not at 15 s: only 5 s after the previous line).
    assert lines == [
        "bulk job 750000000000001AAA (upsert Account) InProgress: 2,500 records processed so "
        "far, 250 failed, waiting 10s",
        "bulk job 750000000000001AAA (upsert Account) InProgress: 6,000 records processed so "
        "far, 600 failed, waiting 21s",
    ]
    # Another job has its own clock.
    other = BulkJobInfo(id="750000000000002AAA", object="Contact", operation="insert", state="Open")
    log(other)
    assert len(lines) == 2


def many_accounts(n: int) -> pl.DataFrame:
    when = datetime(2026, 1, 1, tzinfo=UTC)
    return pl.DataFrame(
        {
            "account_id": [f"A{i:05d}" for i in range(n)],
            "name": [f"Account {i}" for i in range(n)],
            "industry": ["Technology"] * n,
            "tier": ["Gold"] * n,
            "annual_revenue": [1000.5] * n,
            "employees": [10] * n,
            "website": ["https://example.com"] * n,
            "billing_city": ["Springfield"] * n,
            "billing_country": ["Germany"] * n,
            "is_deleted": [False] * n,
            "updated_at": [when] * n,
        }
    )


def test_engine_and_bulk_progress_reach_the_run_log(
    emulator: EmulatorServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    emulator.emulator.reset(demo_org())
    # Hold each Bulk job InProgress for a while, like a long job in a real org.
    emulator.emulator.bulk_jobs.processing_delay = 1.0
    for key, value in emulator_environment(emulator, tmp_path).items():
        if key != "DAGSTER_HOME":
            monkeypatch.setenv(key, value)
    warehouse = DuckDBWarehouse.at(str(tmp_path / "warehouse.duckdb"))
    warehouse.replace_table("raw_accounts", many_accounts(400))
    warehouse.replace_table("raw_contacts", pl.DataFrame({"contact_id": ["C1"]}))
    # A project whose accounts sync sends more than 100 records through Bulk.
    project = tmp_path / "project"
    shutil.copytree(DEMO_PROJECT_DIR, project, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    sync_file = project / "syncs" / "salesforce_accounts.yaml"
    sync_file.write_text(sync_file.read_text() + "rest_threshold: 100\n")
    defs = build_definitions(project)
    resources = dict(defs.resources or {})
    resources["salesforce"] = SalesforceResource.from_config(
        load_project(project).config.salesforce, bulk_progress_every_s=0.0
    )
    assets = [a for a in defs.assets or [] if isinstance(a, dg.AssetsDefinition | dg.AssetSpec)]

    with dg.DagsterInstance.ephemeral() as instance:
        result = dg.materialize(
            assets,
            selection=[dg.AssetKey(["accounts"]), ACCOUNTS_SYNC],
            resources=resources,
            instance=instance,
        )
        assert result.success
        lines = [e.user_message for e in instance.all_logs(result.run_id) if e.user_message]

    ours = [line for line in lines if line.startswith("salesforce_accounts")]
    # The engine's phases, each line naming the sync (and partition).
    assert (
        "salesforce_accounts[__all__]: read 400 row(s) from accounts; "
        "0 unchanged at the source, 400 to compare" in ours
    ), ours
    assert any("400 new, 0 changed" in line for line in ours), ours
    assert any("bulk job" in line and "submitted (400 records" in line for line in ours), ours
    assert any("JobComplete: 400 processed, 0 failed" in line for line in ours), ours
    # While the job ran, the client's polls reached the log: records processed so far.
    running = [line for line in ours if "records processed so far" in line]
    assert running, ours
    assert running[0].startswith("salesforce_accounts: bulk job 750")
    assert "(upsert Account) " in running[0] and ", 0 failed, waiting " in running[0]
