"""The sync tester in Dagster: the job ``<sync>_preview`` run through the project's
``Definitions`` against the emulator. It reports what the next run would send (run log and
output metadata), and sends nothing, keeps no state and records no materialization."""

from __future__ import annotations

import os
import re
import shutil
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from sf_activations.config import load_project
from sf_activations.defs import build_definitions
from sf_activations.defs.metadata import preview_metadata
from sf_activations.demo import demo_org, emulator_environment
from sf_activations.demo_project import DEMO_PROJECT_DIR
from sf_activations.demo_project.sample_data import SampleData, write_sample_data
from sf_activations.emulator.server import EmulatorServer
from sf_activations.preview_command import preview_project
from sf_activations.sync.partitions import filter_bucket
from sf_activations.sync.preview import SyncPreview
from sf_activations.sync.state import StateStore
from sf_activations.warehouse.duckdb import DuckDBWarehouse
from sf_activations_tests.test_defs_behaviors import (
    MIRROR_SYNC,
    PROJECT_YAML,
    add_model,
    add_sync,
    by_external_id,
    failure_of,
    load_raw,
    people,
)
from sf_activations_tests.test_defs_emulator import run

ACCOUNTS = "salesforce_accounts"
CONTACTS = "salesforce_contacts"
ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Demo:
    """A copy of the demo project with its models built from a small sample, nothing synced."""

    root: Path
    sample: SampleData
    warehouse: DuckDBWarehouse


@pytest.fixture
def demo(emulator: EmulatorServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Demo:
    emulator.emulator.reset(demo_org())
    for key, value in emulator_environment(emulator, tmp_path).items():
        if key != "DAGSTER_HOME":
            monkeypatch.setenv(key, value)
    root = tmp_path / "project"
    shutil.copytree(DEMO_PROJECT_DIR, root, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    warehouse = DuckDBWarehouse.at(os.environ["SF_ACTIVATIONS_WAREHOUSE"])
    sample = write_sample_data(warehouse, accounts=300)
    for model in load_project(root).models.values():
        warehouse.materialize_model(model.name, model.sql)
    return Demo(root=root, sample=sample, warehouse=warehouse)


@dataclass(frozen=True)
class Preview:
    """One run of a preview job, in its own Dagster instance."""

    result: dg.ExecuteInProcessResult
    instance: dg.DagsterInstance

    @property
    def log(self) -> list[str]:
        """The messages the op logged (``context.log``), in order."""
        return [
            e.user_message
            for e in self.instance.all_logs(self.result.run_id)
            if not e.is_dagster_event
        ]

    @property
    def metadata(self) -> dict[str, Any]:
        """The op's output metadata, as plain values."""
        assert self.result.success, [e.message for e in self.result.get_step_failure_events()]
        (output,) = [e for e in self.result.all_events if e.event_type_value == "STEP_OUTPUT"]
        return {k: v.value for k, v in output.step_output_data.metadata.items()}

    def materialized(self, sync: str) -> bool:
        key = dg.AssetKey(["salesforce", sync])
        return bool(
            self.result.get_asset_materialization_events()
            or self.instance.get_latest_materialization_event(key) is not None
            or self.result.get_asset_check_evaluations()
        )


def preview(
    defs: dg.Definitions, sync: str, *, partition: str | None = None, rows: int = 5
) -> Preview:
    instance = dg.DagsterInstance.ephemeral()
    result = defs.get_job_def(f"{sync}_preview").execute_in_process(
        run_config={"ops": {f"preview_{sync}": {"config": {"rows": rows}}}},
        instance=instance,
        partition_key=partition,
        raise_on_error=False,
    )
    return Preview(result=result, instance=instance)


def state_counts(sync: str) -> dict[str, int]:
    with StateStore(os.environ["SF_ACTIVATIONS_STATE"]) as state:
        return state.counts(sync)


def test_accounts_preview_reports_the_next_run_and_sends_nothing(
    demo: Demo, emulator: EmulatorServer
) -> None:
    defs = build_definitions(demo.root)
    shown = preview(defs, ACCOUNTS, rows=0)
    md = shown.metadata
    valid = demo.sample.accounts - demo.sample.bad_accounts
    counts = {k.removeprefix("sf/preview_"): v for k, v in md.items() if isinstance(v, int)}
    assert counts == {
        "records_read": demo.sample.accounts,
        "rows_compared": demo.sample.accounts,
        "new": valid,
        "changed": 0,
        "retry": 0,
        "unchanged": 0,
        "invalid": demo.sample.bad_accounts,
        "gone": 0,
        "left_alone": 0,
        "settled": 0,
        "open_jobs": 0,
        "estimated_calls": -(-valid // 200),  # REST Collections: up to 1,000 records
    }
    assert demo.sample.bad_accounts > 0
    assert (md["sf/object"], md["sf/partition"]) == ("Account", "__all__")
    assert (
        f"| Account | upsert | rest | {valid} | {-(-valid // 200)} | `External_Id__c`, `Name`"
        in (md["sf/preview_writes"])
    )
    assert md["sf/preview_unmatched"] == {}
    assert md["sf/preview_invalid_sample"].records == []  # rows=0: none listed
    calls = md["sf/preview_api_calls"]
    assert calls["login"] >= 1 and calls["describe"] >= 1
    assert set(calls) <= {"login", "describe", "query"}  # reads only

    # The run log holds every line the command-line tester prints, in the same order.
    printed: list[str] = []
    assert preview_project(demo.root, ACCOUNTS, rows=0, say=printed.append) == 0
    lines = printed[:-1]  # the last one counts the command's own API calls
    assert lines[0].startswith(
        f"{ACCOUNTS}[__all__] -> Account (update_or_create): {demo.sample.accounts} row(s)"
    )
    log = shown.log
    start = log.index(lines[0])
    assert log[start : start + len(lines)] == lines
    assert f"  ... {demo.sample.bad_accounts} more invalid" in lines
    assert re.fullmatch(r"  \(this preview used .*login 1.*; nothing was sent\)", log[-1])

    # Samples as they would be sent, when asked for.
    sampled = preview(defs, ACCOUNTS, rows=2)
    samples = [line for line in sampled.log if line.startswith("    External_Id__c=")]
    assert len(samples) == 2
    invalid = sampled.metadata["sf/preview_invalid_sample"].records
    assert len(invalid) == 2 and all(r.data["reason"] for r in invalid)

    # Nothing was sent, remembered or recorded.
    assert emulator.org.count("Account") == 0
    assert state_counts(ACCOUNTS) == {"synced": 0, "pending": 0}
    assert not shown.materialized(ACCOUNTS) and not sampled.materialized(ACCOUNTS)
    assert not load_project(demo.root).describe_dir.exists()  # no describe snapshot either


def test_a_hash_partitioned_preview_takes_the_sync_partitions(
    demo: Demo, emulator: EmulatorServer
) -> None:
    defs = build_definitions(demo.root)
    job = defs.get_job_def(f"{CONTACTS}_preview")
    sync = defs.resolve_asset_graph().get(dg.AssetKey(["salesforce", CONTACTS]))
    assert job.partitions_def == sync.partitions_def
    assert job.partitions_def is not None
    assert job.partitions_def.get_partition_keys() == ["b00", "b01", "b02", "b03"]

    shown = preview(defs, CONTACTS, partition="b01")
    md = shown.metadata
    in_bucket = filter_bucket(demo.warehouse.read("contacts"), "contact_id", "b01", 4).height
    assert md["sf/partition"] == "b01"
    assert md["sf/preview_records_read"] == in_bucket
    assert 0 < in_bucket < demo.sample.contacts
    assert md["sf/preview_new"] + md["sf/preview_invalid"] == in_bucket
    assert f"{CONTACTS}[b01] -> Contact (update_or_create)" in " ".join(shown.log)
    assert emulator.org.count("Contact") == 0
    assert state_counts(CONTACTS) == {"synced": 0, "pending": 0}
    assert not shown.materialized(CONTACTS)


def test_a_model_not_built_fails_the_preview_as_it_fails_the_sync(demo: Demo) -> None:
    demo.warehouse.execute("drop table accounts")
    shown = preview(build_definitions(demo.root), ACCOUNTS)
    description, md = failure_of(shown.result)
    assert description.startswith(
        f"sync '{ACCOUNTS}' ({demo.root / 'syncs' / 'salesforce_accounts.yaml'}), "
        "partition '__all__', object 'Account': its source table 'accounts'"
    )
    assert "What to do: Materialize 'accounts' first" in description
    assert (md["sf/error_code"], md["sf/sync"]) == ("SOURCE_NOT_BUILT", ACCOUNTS)


def test_a_sync_that_does_not_fit_the_object_fails_the_preview(
    demo: Demo, emulator: EmulatorServer
) -> None:
    sync_file = demo.root / "syncs" / "salesforce_accounts.yaml"
    sync_file.write_text(
        sync_file.read_text().replace(
            "  - {source: name, target: Name}",
            "  - {source: name, target: Name}\n  - {source: industry, target: No_Such_Field__c}",
        )
    )
    shown = preview(build_definitions(demo.root), ACCOUNTS)
    description, md = failure_of(shown.result)
    assert description.startswith(
        f"sync '{ACCOUNTS}', partition '__all__', object 'Account': the sync does not fit Account"
    )
    assert "No_Such_Field__c" in description
    assert any("No_Such_Field__c" in p for p in md["sf/config_problems"])
    assert emulator.org.count("Account") == 0


@pytest.fixture
def mirror_project(
    emulator: EmulatorServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Path:
    """A project with one Mirror sync (``contacts_mirror``) of ten people, run once."""
    for key, value in emulator_environment(emulator, tmp_path).items():
        if key.startswith("SF_") and not key.startswith("SF_ACTIVATIONS_"):
            monkeypatch.setenv(key, value)
    root = tmp_path / "project"
    (root / "models").mkdir(parents=True)
    (root / "syncs").mkdir()
    (root / "sf_activations.yaml").write_text(textwrap.dedent(PROJECT_YAML))
    model = add_model(root, "people")
    _, sync = add_sync(root, "contacts_mirror", MIRROR_SYNC)
    load_raw(root, people(10))
    defs = build_definitions(root)
    assert run(defs, [model]).success
    assert run(defs, [sync]).success
    return root


def test_mirror_preview_shows_the_deletes_and_trips_the_delete_guard(
    mirror_project: Path, emulator: EmulatorServer
) -> None:
    warehouse = DuckDBWarehouse.at(str(mirror_project / "warehouse.duckdb"))
    state_file = mirror_project / ".sf_state" / "state.sqlite"
    before = by_external_id(emulator, "Contact")
    assert len(before) == 10

    # Two people leave the model: the preview plans their deletion and deletes nothing.
    warehouse.execute("delete from raw_rows where person_id in ('p03', 'p07')")
    defs = build_definitions(mirror_project)
    assert run(defs, [dg.AssetKey(["people"])]).success
    md = preview(defs, "contacts_mirror").metadata
    assert (md["sf/preview_gone"], md["sf/preview_unchanged"], md["sf/preview_new"]) == (2, 8, 0)
    assert "| Contact | delete | rest | 2 | 1 |" in md["sf/preview_writes"]
    assert by_external_id(emulator, "Contact") == before

    # Most rows leave: the preview fails as the sync would, naming the guard and the fix.
    warehouse.execute("delete from raw_rows where person_id not in ('p00', 'p01')")
    assert run(defs, [dg.AssetKey(["people"])]).success
    tripped = preview(defs, "contacts_mirror")
    description, failure = failure_of(tripped.result)
    assert failure["sf/error_code"] == "DELETE_GUARD"
    assert (
        description.startswith("sync 'contacts_mirror' (")
        and "partition '__all__', object 'Contact': " in description
    )
    assert "delete 8 of the 10 Contact records the sync tracks (80%)" in description
    assert "What to do: Check the model 'people' first" in description
    assert by_external_id(emulator, "Contact") == before
    with StateStore(state_file) as state:
        assert state.counts("contacts_mirror") == {"synced": 10, "pending": 0}
    assert not tripped.materialized("contacts_mirror")


def test_every_preview_metadata_key_is_in_the_readme() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## The Dagster UI on the demo project", 1)[1].split("\n## ", 1)[0]
    empty = SyncPreview(
        sync="s",
        partition="__all__",
        sobject="Account",
        behavior="update_or_create",
        records_read=0,
        rows_compared=0,
        new=0,
        changed=0,
        retry=0,
        unchanged=0,
        invalid=0,
        gone=0,
        left_alone=0,
        settled=0,
        open_jobs=0,
        writes=(),
    )
    md = preview_metadata(empty, {})
    assert md["sf/preview_writes"].value == "Nothing to send."
    for key in md:
        if key in ("sf/object", "sf/partition"):
            continue
        assert f"`{key}`" in section, f"README.md's Dagster UI section lacks `{key}`"
