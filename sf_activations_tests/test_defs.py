"""The Dagster definitions: the demo project loads whole (offline), with lineage, partitions,
checks, schedules and EnvVar-backed resources."""

from __future__ import annotations

from datetime import UTC, datetime

import dagster as dg
import pytest

from sf_activations.defs import CHECK_NAME, SalesforceResource, build_definitions
from sf_activations.defs.assets import SYNCS_GROUP
from sf_activations.demo_project import DEMO_PROJECT_DIR


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
        "accounts",
        "contacts",
        "salesforce/salesforce_accounts",
        "salesforce/salesforce_contacts",
    }
    groups = {k.to_user_string(): graph.get(k).group_name for k in graph.get_all_asset_keys()}
    assert groups["accounts"] == "models"
    assert groups["raw_accounts"] == "sources"
    assert groups["salesforce/salesforce_contacts"] == SYNCS_GROUP


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


def test_partitions_checks_and_schedules(demo_defs: dg.Definitions) -> None:
    graph = demo_defs.resolve_asset_graph()
    contacts = graph.get(dg.AssetKey(["salesforce", "salesforce_contacts"]))
    assert contacts.partitions_def is not None
    assert contacts.partitions_def.get_partition_keys() == ["b00", "b01", "b02", "b03"]
    assert graph.get(dg.AssetKey(["salesforce", "salesforce_accounts"])).partitions_def is None
    check_keys = {(c.asset_key.to_user_string(), c.name) for c in graph.asset_check_keys}
    assert check_keys == {
        ("salesforce/salesforce_accounts", CHECK_NAME),
        ("salesforce/salesforce_contacts", CHECK_NAME),
    }
    schedules = {s.name: s for s in demo_defs.schedules or []}
    assert set(schedules) == {"salesforce_accounts_schedule", "salesforce_contacts_schedule"}
    sched = schedules["salesforce_contacts_schedule"]
    assert isinstance(sched, dg.ScheduleDefinition)
    assert sched.cron_schedule == "15 * * * *"
    assert sched.default_status == dg.DefaultScheduleStatus.STOPPED


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
