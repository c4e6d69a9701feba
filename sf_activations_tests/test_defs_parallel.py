"""Hash-bucket partitions of a sync run in parallel processes through Dagster itself.

Four partition runs of the contacts sync are launched at once on a real ``DagsterInstance`` (in
a temp dir); each run's step executes in its own process (Dagster's multiprocess executor),
against the emulator, sharing one state file. Afterwards the state, the org and the runs'
metadata must agree: every record synced exactly once, in its own bucket, no duplicates.
"""

from __future__ import annotations

import os
import shutil
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import dagster as dg
import polars as pl
import pytest

from sf_activations.config import load_project, resolve_credentials
from sf_activations.defs import build_definitions
from sf_activations.demo import demo_org, emulator_environment
from sf_activations.demo_project import DEMO_PROJECT_DIR
from sf_activations.emulator.server import EmulatorServer
from sf_activations.salesforce.connection import connect
from sf_activations.sync.partitions import bucket_of, bucket_partition_keys
from sf_activations.sync.state import StateStore
from sf_activations.warehouse.duckdb import DuckDBWarehouse

CONTACTS_SYNC = dg.AssetKey(["salesforce", "salesforce_contacts"])
CONTACTS_JOB = "salesforce_contacts_job"
N_ACCOUNTS = 20
N_CONTACTS = 1200  # ~300 per bucket; the test project's rest_threshold sends them by Bulk
BAD_CONTACTS = {"C00007", "C00500"}  # their account does not exist: Salesforce rejects them


def contacts_job() -> dg.JobDefinition:
    """The contacts sync's job, rebuilt in each step process from the environment."""
    return build_definitions(os.environ["SF_ACTIVATIONS_PROJECT"]).resolve_job_def(CONTACTS_JOB)


def bulk_project(root: Path) -> Path:
    """The demo project, with the contacts sync sending more than 100 records through Bulk."""
    shutil.copytree(DEMO_PROJECT_DIR, root, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    sync_file = root / "syncs" / "salesforce_contacts.yaml"
    sync_file.write_text(sync_file.read_text() + "rest_threshold: 100\n")
    return root


def raw_tables() -> tuple[pl.DataFrame, pl.DataFrame]:
    when = datetime(2026, 1, 1, tzinfo=UTC)
    accounts = pl.DataFrame(
        {
            "account_id": [f"A{i:03d}" for i in range(N_ACCOUNTS)],
            "name": [f"Account {i}" for i in range(N_ACCOUNTS)],
            "industry": ["Technology"] * N_ACCOUNTS,
            "tier": ["Gold"] * N_ACCOUNTS,
            "annual_revenue": [1000.5] * N_ACCOUNTS,
            "employees": [10] * N_ACCOUNTS,
            "website": ["https://example.com"] * N_ACCOUNTS,
            "billing_city": ["Springfield"] * N_ACCOUNTS,
            "billing_country": ["Germany"] * N_ACCOUNTS,
            "is_deleted": [False] * N_ACCOUNTS,
            "updated_at": [when] * N_ACCOUNTS,
        }
    )
    ids = [f"C{i:05d}" for i in range(N_CONTACTS)]
    contacts = pl.DataFrame(
        {
            "contact_id": ids,
            "first_name": ["Ada"] * N_CONTACTS,
            "last_name": [f"Person{i}" for i in range(N_CONTACTS)],
            "email": [f"p{i}@example.com" for i in range(N_CONTACTS)],
            "title": ["CTO"] * N_CONTACTS,
            "phone": ["+1-555-0100"] * N_CONTACTS,
            "account_id": [
                "NOPE" if cid in BAD_CONTACTS else f"A{i % N_ACCOUNTS:03d}"
                for i, cid in enumerate(ids)
            ],
            "updated_at": [when] * N_CONTACTS,
        }
    )
    return accounts, contacts


def materialization_of(instance: dg.DagsterInstance, run_id: str) -> dict[str, Any]:
    for entry in instance.all_logs(run_id):
        mat = entry.asset_materialization
        if mat is not None and mat.asset_key == CONTACTS_SYNC:
            return {k: v.value for k, v in mat.metadata.items()}
    raise AssertionError(f"run {run_id} materialized nothing")


def step_window(instance: dg.DagsterInstance, run_id: str) -> tuple[float, float, int]:
    """(start, end, pid) of the run's sync step, from the event log."""
    start = end = 0.0
    pid = 0
    for entry in instance.all_logs(run_id):
        event = entry.dagster_event
        if event is None or event.step_key is None:
            continue
        if event.event_type == dg.DagsterEventType.STEP_START:
            start, pid = entry.timestamp, int(event.pid or 0)
        elif event.event_type == dg.DagsterEventType.STEP_SUCCESS:
            end = entry.timestamp
    return start, end, pid


@pytest.mark.slow
def test_four_bucket_partitions_in_parallel_processes(
    emulator: EmulatorServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    emulator.emulator.reset(demo_org())
    # Each Bulk job stays InProgress for a moment, so the four runs overlap in Salesforce too.
    emulator.emulator.bulk_jobs.processing_delay = 1.0
    project = bulk_project(tmp_path / "project")
    for key, value in emulator_environment(emulator, tmp_path).items():
        monkeypatch.setenv(key, value)  # the step processes inherit these
    monkeypatch.setenv("SF_ACTIVATIONS_PROJECT", str(project))
    accounts, contacts = raw_tables()
    warehouse = DuckDBWarehouse.at(str(tmp_path / "warehouse.duckdb"))
    warehouse.replace_table("raw_accounts", accounts)
    warehouse.replace_table("raw_contacts", contacts)

    # Models and the Account sync first, in this process (the contacts look their accounts up).
    defs = build_definitions(project)
    assets = [a for a in defs.assets or [] if isinstance(a, dg.AssetsDefinition | dg.AssetSpec)]
    first = dg.materialize(
        assets,
        selection=[
            dg.AssetKey(["accounts"]),
            dg.AssetKey(["contacts"]),
            dg.AssetKey(["salesforce", "salesforce_accounts"]),
        ],
        resources=dict(defs.resources or {}),
    )
    assert first.success
    del warehouse  # the step processes open the DuckDB file themselves

    partitions = bucket_partition_keys(4)
    recon = dg.reconstructable(contacts_job)
    home = tmp_path / "dagster_home"
    home.mkdir(exist_ok=True)
    with dg.DagsterInstance.local_temp(str(home)) as instance:

        def launch(partition: str) -> str:
            result = dg.execute_job(recon, instance, tags={"dagster/partition": partition})
            return result.run_id

        with ThreadPoolExecutor(len(partitions)) as pool:
            run_ids = dict(zip(partitions, pool.map(launch, partitions), strict=True))

        for partition, run_id in run_ids.items():
            run = instance.get_run_by_id(run_id)
            assert run is not None and run.status == dg.DagsterRunStatus.SUCCESS, partition
            assert run.tags["dagster/partition"] == partition
        metadata = {p: materialization_of(instance, r) for p, r in run_ids.items()}
        windows = [step_window(instance, r) for r in run_ids.values()]

    # Each step ran in a process of its own, none in this one, and some of them at once.
    pids = [pid for _, _, pid in windows]
    assert len(set(pids)) == len(partitions) and os.getpid() not in pids
    overlaps = sum(
        1
        for i, (s1, e1, _) in enumerate(windows)
        for s2, e2, _ in windows[i + 1 :]
        if s1 < e2 and s2 < e1
    )
    assert overlaps >= 1, windows

    # Per-partition counts add up to the model, and each partition read exactly its bucket.
    buckets = Counter(bucket_of(contacts["contact_id"], 4).to_list())
    for partition, md in metadata.items():
        assert md["sf/partition"] == partition
        assert md["sf/records_read"] == buckets[int(partition[1:])]
    total = {k: sum(md[f"sf/{k}"] for md in metadata.values()) for k in ("records_read", "created")}
    assert total == {"records_read": N_CONTACTS, "created": N_CONTACTS - len(BAD_CONTACTS)}
    assert sum(md["sf/rejected"] for md in metadata.values()) == len(BAD_CONTACTS)
    assert sum(len(md["sf/bulk_job_ids"]) for md in metadata.values()) >= len(partitions)

    # The state store: every contact once, in its own bucket; synced unless Salesforce refused.
    state_path = load_project(project).state_path
    with StateStore(state_path) as store:
        assert sorted(store.partitions("salesforce_contacts")) == partitions
        frames = [
            store.load("salesforce_contacts", p).with_columns(partition=pl.lit(p))
            for p in partitions
        ]
    state = pl.concat(frames)
    assert state.height == N_CONTACTS and state["key"].n_unique() == N_CONTACTS
    expected_bucket = bucket_of(state["key"], 4).map_elements(
        lambda b: f"b{b:02d}", return_dtype=pl.String
    )
    assert (state["partition"] == expected_bucket).all()
    pending = state.filter(pl.col("status") == "pending")
    assert set(pending["key"].to_list()) == BAD_CONTACTS
    synced = state.filter(pl.col("status") == "synced")
    assert synced["salesforce_id"].null_count() == 0
    assert synced["salesforce_id"].n_unique() == synced.height

    # The org: exactly one Contact per synced key, with the Id the state recorded.
    client = connect(resolve_credentials(load_project(project).config.salesforce))
    try:
        rows = client.query("SELECT Id, External_Id__c FROM Contact")
    finally:
        client.close()
    org = pl.DataFrame(rows).rename({"External_Id__c": "key", "Id": "org_id"})
    assert org.height == N_CONTACTS - len(BAD_CONTACTS)
    assert org["key"].n_unique() == org.height
    joined = synced.join(org, on="key", how="full", coalesce=True)
    assert joined.height == org.height
    assert (joined["salesforce_id"] == joined["org_id"]).all()
