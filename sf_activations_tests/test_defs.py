"""The Dagster definitions: the demo project loads whole (offline), with lineage, partitions,
checks, schedules and EnvVar-backed resources."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from sf_activations.defs import CHECK_NAME, SalesforceResource, build_definitions
from sf_activations.defs.assets import SYNCS_GROUP
from sf_activations.demo_project import DEMO_PROJECT_DIR
from sf_activations.warehouse.duckdb import DuckDBWarehouse


@pytest.fixture(scope="module")
def demo_defs() -> dg.Definitions:
    return build_definitions(DEMO_PROJECT_DIR)


def test_demo_definitions_load_and_validate(demo_defs: dg.Definitions) -> None:
    dg.Definitions.validate_loadable(demo_defs)
    graph = demo_defs.resolve_asset_graph()
    keys = {k.to_user_string() for k in graph.get_all_asset_keys()}
    assert keys == {
        "raw_accounts",
        "raw_contacts",
        "raw_contact_enrichment",
        "accounts",
        "contacts",
        "contact_enrichment",
        "salesforce/salesforce_accounts",
        "salesforce/salesforce_contacts",
        "salesforce/salesforce_contact_enrichment",
    }
    groups = {k.to_user_string(): graph.get(k).group_name for k in graph.get_all_asset_keys()}
    assert groups["accounts"] == "models"
    assert groups["raw_accounts"] == "sources"
    assert groups["salesforce/salesforce_contacts"] == SYNCS_GROUP
    assert groups["contact_enrichment"] == "models"
    assert groups["raw_contact_enrichment"] == "sources"
    assert groups["salesforce/salesforce_contact_enrichment"] == SYNCS_GROUP


def test_lineage_models_and_syncs(demo_defs: dg.Definitions) -> None:
    graph = demo_defs.resolve_asset_graph()
    parents = {
        k.to_user_string(): {p.to_user_string() for p in graph.get(k).parent_keys}
        for k in graph.get_all_asset_keys()
    }
    assert parents["accounts"] == {"raw_accounts"}
    assert parents["contacts"] == {"raw_contacts", "accounts"}
    assert parents["salesforce/salesforce_accounts"] == {"accounts"}
    # the contacts sync waits for the accounts sync: its lookups need the accounts in Salesforce
    assert parents["salesforce/salesforce_contacts"] == {
        "contacts",
        "salesforce/salesforce_accounts",
    }
    # the enrichment matches Contacts by Email: the contacts sync creates them first
    assert parents["contact_enrichment"] == {"raw_contact_enrichment"}
    assert parents["salesforce/salesforce_contact_enrichment"] == {
        "contact_enrichment",
        "salesforce/salesforce_contacts",
    }


def test_partitions_checks_and_schedules(demo_defs: dg.Definitions) -> None:
    graph = demo_defs.resolve_asset_graph()
    contacts = graph.get(dg.AssetKey(["salesforce", "salesforce_contacts"]))
    assert contacts.partitions_def is not None
    assert contacts.partitions_def.get_partition_keys() == ["b00", "b01", "b02", "b03"]
    assert graph.get(dg.AssetKey(["salesforce", "salesforce_accounts"])).partitions_def is None
    enrichment = graph.get(dg.AssetKey(["salesforce", "salesforce_contact_enrichment"]))
    assert enrichment.partitions_def is None
    assert enrichment.metadata["sf/behavior"] == "update_only"
    check_keys = {(c.asset_key.to_user_string(), c.name) for c in graph.asset_check_keys}
    assert check_keys == {
        ("salesforce/salesforce_accounts", CHECK_NAME),
        ("salesforce/salesforce_contacts", CHECK_NAME),
        ("salesforce/salesforce_contact_enrichment", CHECK_NAME),
    }
    schedules = {s.name: s for s in demo_defs.schedules or []}
    assert set(schedules) == {
        "salesforce_accounts_schedule",
        "salesforce_contacts_schedule",
        "salesforce_contact_enrichment_schedule",
    }
    sched = schedules["salesforce_contacts_schedule"]
    assert isinstance(sched, dg.ScheduleDefinition)
    assert sched.cron_schedule == "15 * * * *"
    assert sched.default_status == dg.DefaultScheduleStatus.STOPPED


def test_every_sync_has_a_job_and_a_preview_job(demo_defs: dg.Definitions) -> None:
    syncs = ["salesforce_accounts", "salesforce_contacts", "salesforce_contact_enrichment"]
    jobs = {j.name for j in demo_defs.get_repository_def().get_all_jobs()}
    assert jobs - {"__ASSET_JOB"} == {f"{s}_{kind}" for s in syncs for kind in ("job", "preview")}
    graph = demo_defs.resolve_asset_graph()
    for sync in syncs:
        preview = demo_defs.get_job_def(f"{sync}_preview")
        # the sync's own partitions (the launchpad asks for one), and one op that is no asset
        assert preview.partitions_def == graph.get(dg.AssetKey(["salesforce", sync])).partitions_def
        assert [node.name for node in preview.nodes] == [f"preview_{sync}"]
        assert not preview.asset_layer.selected_asset_keys


def test_contacts_schedule_requests_every_bucket(demo_defs: dg.Definitions) -> None:
    sched = next(s for s in demo_defs.schedules or [] if s.name == "salesforce_contacts_schedule")
    assert isinstance(sched, dg.ScheduleDefinition)
    with dg.build_schedule_context(
        repository_def=demo_defs.get_repository_def(),
        scheduled_execution_time=datetime(2026, 1, 1, 12, 15, tzinfo=UTC),
    ) as context:
        data = sched.evaluate_tick(context)
    assert data.run_requests is not None
    assert sorted(r.partition_key or "" for r in data.run_requests) == ["b00", "b01", "b02", "b03"]


def test_secrets_are_env_vars_not_values(demo_defs: dg.Definitions) -> None:
    resource = (demo_defs.resources or {})["salesforce"]
    assert isinstance(resource, SalesforceResource)
    # Unresolved EnvVars: no secret is read while loading definitions.
    assert resource.password == dg.EnvVar("SF_PASSWORD")
    assert resource.security_token == dg.EnvVar("SF_SECURITY_TOKEN")
    assert resource.login_url == dg.EnvVar("SF_LOGIN_URL")
    assert resource.auth == "password"


TIME_PROJECT = """
warehouse: {path: wh.duckdb}
state: {path: state.sqlite}
salesforce:
  login_url: https://acme.my.salesforce.com
  auth: client_credentials
  consumer_key_env: TEST_SF_KEY
  consumer_secret_env: TEST_SF_SECRET
sources:
  - {name: raw_signups, table: raw_signups}
models:
  signups:
    time_partitions: {column: signup_day, start: "2026-01-01", granularity: daily}
"""

TIME_SYNC = """
source: signups
object: Contact
behavior: update_or_create
key: {source: signup_id, target: External_Id__c}
mappings:
  - {source: last_name, target: LastName}
  - {source: no_such_column, target: Title}
partitions: time
"""


def _time_project(root: Path) -> Path:
    (root / "models").mkdir(parents=True)
    (root / "syncs").mkdir()
    (root / "sf_activations.yaml").write_text(TIME_PROJECT)
    (root / "models" / "signups.sql").write_text(
        "select * from raw_signups where last_name is not null"
    )
    (root / "syncs" / "signups_to_contacts.yaml").write_text(TIME_SYNC)
    wh = DuckDBWarehouse.at(str(root / "wh.duckdb"))
    wh.replace_table(
        "raw_signups",
        pl.DataFrame(
            {
                "signup_id": ["S1", "S2", "S3", "S4"],
                "last_name": ["A", "B", "C", None],
                "signup_day": [
                    date(2026, 1, 1),
                    date(2026, 1, 2),
                    date(2026, 1, 2),
                    date(2026, 1, 2),
                ],
            }
        ),
    )
    return root


def test_time_partitioned_model_and_sync(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_SF_KEY", "key")
    monkeypatch.setenv("TEST_SF_SECRET", "secret")
    root = _time_project(tmp_path)
    defs = build_definitions(root)
    graph = defs.resolve_asset_graph()
    model = graph.get(dg.AssetKey(["signups"]))
    sync = graph.get(dg.AssetKey(["salesforce", "signups_to_contacts"]))
    assert isinstance(model.partitions_def, dg.DailyPartitionsDefinition)
    assert sync.partitions_def == model.partitions_def
    assets = [a for a in defs.assets or [] if isinstance(a, dg.AssetsDefinition | dg.AssetSpec)]
    resources = dict(defs.resources or {})

    result = dg.materialize(
        assets, selection=[model.key], partition_key="2026-01-02", resources=resources
    )
    (mat,) = result.asset_materializations_for_node("signups")
    assert mat.metadata["dagster/row_count"].value == 2  # S2, S3 (S4 filtered by the model)
    wh = DuckDBWarehouse.at(str(root / "wh.duckdb"))
    assert sorted(wh.read("signups")["signup_id"].to_list()) == ["S2", "S3"]

    # The sync reads its partition, finds a mapped column missing, and fails before any
    # Salesforce call, naming the file, the sync and the field.
    failed = dg.materialize(
        assets,
        selection=[sync.key],
        partition_key="2026-01-02",
        resources=resources,
        raise_on_error=False,
    )
    assert not failed.success
    (event,) = failed.get_step_failure_events()
    user = event.step_failure_data.user_failure_data
    assert user is not None and user.description is not None
    assert (
        "signups_to_contacts.yaml, sync 'signups_to_contacts', partition '2026-01-02', "
        "field 'mappings[1].source'" in user.description
    )
    assert "add the column to the model's SELECT; nothing was sent" in user.description
    assert "no_such_column" in user.description

    # The preview job has the same time partitions and fails the same way, for the same window.
    preview = defs.get_job_def("signups_to_contacts_preview")
    assert preview.partitions_def == model.partitions_def
    refused = preview.execute_in_process(partition_key="2026-01-02", raise_on_error=False)
    (event,) = refused.get_step_failure_events()
    user = event.step_failure_data.user_failure_data
    assert user is not None and user.description is not None
    assert (
        "signups_to_contacts.yaml, sync 'signups_to_contacts', partition '2026-01-02', "
        "field 'mappings[1].source'" in user.description
    )


def test_a_dbt_like_upstream_asset_can_be_a_sync_source(tmp_path: Path) -> None:
    root = tmp_path / "p"
    (root / "models").mkdir(parents=True)
    (root / "syncs").mkdir()
    (root / "sf_activations.yaml").write_text(
        TIME_PROJECT.split("sources:", maxsplit=1)[0]
        + "sources:\n  - {name: customers, table: analytics.customers, asset_key: [dbt, customers]}\n"
    )
    (root / "syncs" / "customers.yaml").write_text(
        TIME_SYNC.replace("source: signups", "source: customers").replace("partitions: time", "")
    )

    @dg.asset(key=["dbt", "customers"], group_name="dbt")
    def customers() -> None: ...

    defs = build_definitions(root, extra_assets=[customers])
    graph = defs.resolve_asset_graph()
    sync = graph.get(dg.AssetKey(["salesforce", "customers"]))
    assert sync.parent_keys == {dg.AssetKey(["dbt", "customers"])}
    # the real asset is used, not an external stand-in
    assert graph.get(dg.AssetKey(["dbt", "customers"])).is_materializable
    assert graph.get(dg.AssetKey(["dbt", "customers"])).group_name == "dbt"
