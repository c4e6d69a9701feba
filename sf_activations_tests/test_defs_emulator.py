"""Model and sync assets materialized with Dagster against the emulator (real client, HTTPS).

The demo project's models and syncs run on small literal tables, so every count in the
metadata can be asserted exactly.
"""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import dagster as dg
import polars as pl
import pytest

from sf_activations.config import ConfigError
from sf_activations.defs import CHECK_NAME, build_definitions
from sf_activations.demo import demo_org, emulator_environment
from sf_activations.demo_project import DEMO_PROJECT_DIR
from sf_activations.emulator.server import EmulatorServer
from sf_activations.sync.partitions import bucket_of
from sf_activations.sync.report import ERROR_GUIDE
from sf_activations.warehouse.duckdb import DuckDBWarehouse

ACCOUNTS_SYNC = dg.AssetKey(["salesforce", "salesforce_accounts"])
CONTACTS_SYNC = dg.AssetKey(["salesforce", "salesforce_contacts"])
ENRICHMENT_SYNC = dg.AssetKey(["salesforce", "salesforce_contact_enrichment"])
MODELS = [dg.AssetKey(["accounts"]), dg.AssetKey(["contacts"])]
ENRICHMENT_MODEL = dg.AssetKey(["contact_enrichment"])
BUCKETS = ["b00", "b01", "b02", "b03"]
TRIGGER = "CANNOT_INSERT_UPDATE_ACTIVATE_ENTITY"
NO_MATCH = "NO_MATCHING_RECORD"


def raw_accounts() -> pl.DataFrame:
    when = datetime(2026, 1, 1, tzinfo=UTC)
    rows = [
        ("A1", "Acme", "Gold", "Germany", False),
        ("A2", "Globex", "Silver", "France", False),
        ("A3", "Initech", None, "Japan", False),
        ("A4", "L" * 300, "Gold", "Canada", False),  # too long: invalid before sending
        ("A5", "Atlantis Trading", "Bronze", "Atlantis", False),  # the org's trigger refuses it
        ("A6", "Gone Corp", "Gold", "Peru", True),  # deleted in the source: never read
    ]
    return pl.DataFrame(
        {
            "account_id": [r[0] for r in rows],
            "name": [r[1] for r in rows],
            "industry": ["Technology"] * len(rows),
            "tier": [r[2] for r in rows],
            "annual_revenue": [1000.5] * len(rows),
            "employees": [10] * len(rows),
            "website": ["https://example.com"] * len(rows),
            "billing_city": ["Springfield"] * len(rows),
            "billing_country": [r[3] for r in rows],
            "is_deleted": [r[4] for r in rows],
            "updated_at": [when] * len(rows),
        }
    )


def raw_contacts() -> pl.DataFrame:
    accounts = ["A1", "A1", "A2", "A2", "A3", "A3", "A1", "NOPE"]  # C8: no such account
    n = len(accounts)
    return pl.DataFrame(
        {
            "contact_id": [f"C{i}" for i in range(1, n + 1)],
            "first_name": ["Ada"] * n,
            "last_name": [f"Person{i}" for i in range(1, n + 1)],
            "email": [f"p{i}@example.com" for i in range(1, n + 1)],
            "title": ["CTO"] * n,
            "phone": ["+1-555-0100"] * n,
            "account_id": accounts,
            "updated_at": [datetime(2026, 1, 1, tzinfo=UTC)] * n,
        }
    )


def raw_contact_enrichment() -> pl.DataFrame:
    """The vendor's file: three contacts' emails in other letter cases, two unknown people."""
    return pl.DataFrame(
        {
            "email": [
                "P1@EXAMPLE.COM",  # the contacts sync stored p1@example.com
                "p2@Example.com",
                "p3@example.com",
                "nobody@example.org",  # no contact has these two
                "new.hire@example.org",
            ],
            "department": ["Engineering", "Sales", "Finance", "Marketing", "Support"],
            "mobile_phone": [f"+1-555-020{i}" for i in range(1, 6)],
        }
    )


@pytest.fixture
def demo_env(
    emulator: EmulatorServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> DuckDBWarehouse:
    """The emulator with the demo org, the demo project's env vars, literal raw tables."""
    emulator.emulator.reset(demo_org())
    for key, value in emulator_environment(emulator, tmp_path).items():
        if key != "DAGSTER_HOME":
            monkeypatch.setenv(key, value)
    warehouse = DuckDBWarehouse.at(str(tmp_path / "warehouse.duckdb"))
    warehouse.replace_table("raw_accounts", raw_accounts())
    warehouse.replace_table("raw_contacts", raw_contacts())
    warehouse.replace_table("raw_contact_enrichment", raw_contact_enrichment())
    return warehouse


def run(
    defs: dg.Definitions, selection: list[dg.AssetKey], partition: str | None = None
) -> dg.ExecuteInProcessResult:
    assets = [a for a in defs.assets or [] if isinstance(a, dg.AssetsDefinition | dg.AssetSpec)]
    return dg.materialize(
        assets,
        selection=selection,
        partition_key=partition,
        resources=dict(defs.resources or {}),
        raise_on_error=False,
    )


def metadata_of(result: dg.ExecuteInProcessResult, key: dg.AssetKey) -> dict[str, Any]:
    assert result.success, [e.message for e in result.get_step_failure_events()]
    for event in result.get_asset_materialization_events():
        mat = event.step_materialization_data.materialization
        if mat.asset_key == key:
            return {k: v.value for k, v in mat.metadata.items()}
    raise AssertionError(f"no materialization of {key}")


def check_of(result: dg.ExecuteInProcessResult) -> dg.AssetCheckEvaluation:
    (evaluation,) = result.get_asset_check_evaluations()
    assert evaluation.check_name == CHECK_NAME
    return evaluation


def table_rows(value: Any) -> list[dict[str, Any]]:
    return [dict(r.data) for r in value.records]


def test_accounts_sync_metadata_values_and_check(
    demo_env: DuckDBWarehouse, emulator: EmulatorServer
) -> None:
    defs = build_definitions(DEMO_PROJECT_DIR)
    models = run(defs, MODELS)
    assert metadata_of(models, dg.AssetKey(["accounts"]))["dagster/row_count"] == 5

    result = run(defs, [ACCOUNTS_SYNC])
    md = metadata_of(result, ACCOUNTS_SYNC)
    counts = {
        k: md[f"sf/{k}"]
        for k in (
            "records_read",
            "invalid",
            "created",
            "updated",
            "unchanged",
            "rejected",
            "skipped",
            "pending_retries",
        )
    }
    assert counts == {
        "records_read": 5,
        "invalid": 1,
        "created": 3,
        "updated": 0,
        "unchanged": 0,
        "rejected": 1,
        "skipped": 2,
        "pending_retries": 2,  # the invalid record is pending too, until the model fixes it
    }
    errors = {row["code"]: row for row in table_rows(md["sf/error_codes"])}
    assert errors[TRIGGER]["count"] == 1
    assert (errors[TRIGGER]["cause"], errors[TRIGGER]["fix"]) == ERROR_GUIDE[TRIGGER]
    (rejected,) = table_rows(md["sf/rejected_sample"])
    assert (rejected["key"], rejected["code"]) == ("A5", TRIGGER)
    assert "Atlantis" in rejected["message"]
    (invalid,) = table_rows(md["sf/invalid_sample"])
    assert (invalid["key"], invalid["column"]) == ("A4", "name")
    assert (
        md["sf/api_calls_total"] > 0
        and sum(md["sf/api_calls"].values()) == md["sf/api_calls_total"]
    )
    assert md["sf/object"] == "Account"
    assert emulator.org.count("Account") == 3

    check = check_of(result)
    assert not check.passed  # 2 of 5 skipped, threshold 5%
    assert check.metadata["sf/rejected_fraction"].value == pytest.approx(0.4)
    text = check.description or ""
    assert text.startswith("Account, partition '__all__': 2 of 5 records skipped")
    assert f"{TRIGGER} (1)" in text and "What to do:" in text
    assert "max_rejected_fraction in salesforce_accounts.yaml" in text

    # The retry sensor asks for a run: A5 is pending with a Salesforce error (A4's invalid
    # name alone would not trigger one).
    sensor = next(s for s in defs.sensors or [] if s.name == "salesforce_accounts_retry_rejected")
    assert isinstance(sensor, dg.SensorDefinition)
    with dg.build_sensor_context(repository_def=defs.get_repository_def()) as context:
        data = sensor.evaluate_tick(context)
    assert len(data.run_requests or []) == 1
    contacts_sensor = next(
        s for s in defs.sensors or [] if s.name == "salesforce_contacts_retry_rejected"
    )
    assert isinstance(contacts_sensor, dg.SensorDefinition)
    with dg.build_sensor_context(repository_def=defs.get_repository_def()) as context:
        assert not contacts_sensor.evaluate_tick(context).run_requests

    # Second run, nothing changed: nothing re-sent except the pending reject, retried.
    again = metadata_of(run(defs, [ACCOUNTS_SYNC]), ACCOUNTS_SYNC)
    assert (again["sf/created"], again["sf/updated"], again["sf/unchanged"]) == (0, 0, 3)
    assert again["sf/rejected"] == 1
    # Only the invalid row and the pending reject were read in full and mapped.
    assert (again["sf/records_read"], again["sf/rows_compared"]) == (5, 2)

    # Fix the data: the rejected record goes through, the check passes (the invalid one stays).
    demo_env.execute("update raw_accounts set billing_country = 'Portugal' where account_id = 'A5'")
    demo_env.execute("update raw_accounts set name = 'Long Ltd' where account_id = 'A4'")
    run(defs, [dg.AssetKey(["accounts"])])
    fixed = run(defs, [ACCOUNTS_SYNC])
    md3 = metadata_of(fixed, ACCOUNTS_SYNC)
    assert (
        md3["sf/created"],
        md3["sf/rejected"],
        md3["sf/invalid"],
        md3["sf/pending_retries"],
    ) == (2, 0, 0, 0)
    assert check_of(fixed).passed
    assert emulator.org.count("Account") == 5


def test_hash_partitioned_contacts_after_accounts(
    demo_env: DuckDBWarehouse, emulator: EmulatorServer
) -> None:
    defs = build_definitions(DEMO_PROJECT_DIR)
    assert run(defs, MODELS).success
    assert run(defs, [ACCOUNTS_SYNC]).success
    buckets = bucket_of(pl.Series([f"C{i}" for i in range(1, 9)]), 4).to_list()
    bad_bucket = f"b{buckets[7]:02d}"
    totals = {"records_read": 0, "created": 0, "rejected": 0}
    for part in BUCKETS:
        result = run(defs, [CONTACTS_SYNC], part)
        md = metadata_of(result, CONTACTS_SYNC)
        assert md["sf/partition"] == part
        assert md["sf/records_read"] == buckets.count(int(part[1:]))
        for key in totals:
            totals[key] += md[f"sf/{key}"]
        check = check_of(result)
        # Dagster shows the latest evaluation: once a bucket is over the threshold, every later
        # bucket's evaluation fails too and names it, so a healthy bucket cannot hide it.
        assert check.passed == (part < bad_bucket)
        if part > bad_bucket:
            share = 1 / buckets.count(int(bad_bucket[1:]))  # C8 pending among its bucket
            assert f"Other partitions over the threshold: '{bad_bucket}' ({share:.1%})" in (
                check.description or ""
            )
            assert check.metadata["sf/partitions_over_threshold"].value == [bad_bucket]
        if part == bad_bucket:
            (row,) = table_rows(md["sf/rejected_sample"])
            assert row["key"] == "C8"
            assert row["code"] == "INVALID_FIELD"
            assert "NOPE" in row["message"]
    assert totals == {"records_read": 8, "created": 7, "rejected": 1}
    assert emulator.org.count("Contact") == 7


def contacts_in_org(emulator: EmulatorServer) -> dict[str, dict[str, Any]]:
    """The emulated org's Contacts by their external id."""
    return {str(r["External_Id__c"]): r for r in emulator.org.rows("Contact")}


def test_contact_enrichment_updates_by_email_and_keeps_unknown_emails_pending(
    demo_env: DuckDBWarehouse, emulator: EmulatorServer
) -> None:
    defs = build_definitions(DEMO_PROJECT_DIR)
    models = run(defs, [*MODELS, ENRICHMENT_MODEL])
    assert metadata_of(models, ENRICHMENT_MODEL)["dagster/row_count"] == 5
    assert run(defs, [ACCOUNTS_SYNC]).success
    for part in BUCKETS:
        assert run(defs, [CONTACTS_SYNC], part).success
    assert emulator.org.count("Contact") == 7  # C8's account does not exist

    result = run(defs, [ENRICHMENT_SYNC])
    md = metadata_of(result, ENRICHMENT_SYNC)
    assert (md["sf/object"], md["sf/partition"]) == ("Contact", "__all__")
    counts = {
        k: md[f"sf/{k}"]
        for k in ("records_read", "invalid", "created", "updated", "unchanged", "rejected")
    }
    assert counts == {
        "records_read": 5,
        "invalid": 0,
        "created": 0,  # Update Only never creates a record
        "updated": 3,
        "unchanged": 0,
        "rejected": 2,
    }
    assert (md["sf/skipped"], md["sf/pending_retries"]) == (2, 2)
    # All five keys were looked up in one short SOQL query.
    assert md["sf/api_calls"]["query"] == 1
    (errors,) = table_rows(md["sf/error_codes"])
    assert (errors["code"], errors["count"]) == (NO_MATCH, 2)
    assert (errors["cause"], errors["fix"]) == ERROR_GUIDE[NO_MATCH]
    rejected = {row["key"]: row for row in table_rows(md["sf/rejected_sample"])}
    assert set(rejected) == {"nobody@example.org", "new.hire@example.org"}
    assert {row["code"] for row in rejected.values()} == {NO_MATCH}
    assert (
        "no Contact record has Email = 'nobody@example.org'"
        in (rejected["nobody@example.org"]["message"])
    )

    # The matched Contacts have the vendor's values; their Email is as the contacts sync wrote
    # it (the key field is not written, whatever the vendor's letter case); the others are
    # untouched.
    org = contacts_in_org(emulator)
    enriched = {
        cid: (org[cid]["Email"], org[cid]["Department"], org[cid]["MobilePhone"])
        for cid in ("C1", "C2", "C3")
    }
    assert enriched == {
        "C1": ("p1@example.com", "Engineering", "+1-555-0201"),
        "C2": ("p2@example.com", "Sales", "+1-555-0202"),
        "C3": ("p3@example.com", "Finance", "+1-555-0203"),
    }
    for cid in ("C4", "C5", "C6", "C7"):
        assert (org[cid]["Email"], org[cid]["Department"]) == (f"p{cid[1:]}@example.com", None)

    check = check_of(result)
    assert not check.passed  # 2 of 5 skipped, threshold 5%
    assert f"{NO_MATCH} (2)" in (check.description or "")

    # Second run, nothing changed: the matched keys cost nothing (no lookup, no update); the
    # two unknown emails are looked up again, in one query.
    again = metadata_of(run(defs, [ENRICHMENT_SYNC]), ENRICHMENT_SYNC)
    assert (again["sf/updated"], again["sf/unchanged"], again["sf/rejected"]) == (0, 3, 2)
    assert again["sf/api_calls"] == {"query": 1}

    # One of the unknown people becomes a Contact: the next run finds and enriches them.
    demo_env.execute(
        "insert into raw_contacts values ('C9', 'New', 'Hire', 'New.Hire@Example.org', "
        "'Engineer', '+1-555-0109', 'A1', timestamp '2026-01-02 00:00:00')"
    )
    assert run(defs, [dg.AssetKey(["contacts"])]).success
    for part in BUCKETS:
        assert run(defs, [CONTACTS_SYNC], part).success
    found = metadata_of(run(defs, [ENRICHMENT_SYNC]), ENRICHMENT_SYNC)
    assert (found["sf/updated"], found["sf/unchanged"], found["sf/rejected"]) == (1, 3, 1)
    hire = contacts_in_org(emulator)["C9"]
    assert (hire["Email"], hire["Department"], hire["MobilePhone"]) == (
        "new.hire@example.org",
        "Support",
        "+1-555-0205",
    )


def test_describe_problem_fails_the_run_naming_sync_and_field(
    demo_env: DuckDBWarehouse, tmp_path: Path
) -> None:
    project = tmp_path / "project"
    shutil.copytree(DEMO_PROJECT_DIR, project, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    sync_file = project / "syncs" / "salesforce_accounts.yaml"
    sync_file.write_text(sync_file.read_text().replace("target: Industry}", "target: Industri}"))
    defs = build_definitions(project)
    assert run(defs, MODELS).success
    result = run(defs, [ACCOUNTS_SYNC])
    assert not result.success
    (failure,) = result.get_step_failure_events()
    text = failure.step_failure_data.error.message if failure.step_failure_data.error else ""
    user = failure.step_failure_data.user_failure_data
    description = user.description if user else ""
    combined = f"{text}\n{description}"
    assert "salesforce_accounts" in combined
    assert "Industri" in combined
    # The run stored the describe it fetched: the next load of the definitions fails offline,
    # naming the file, the sync and the mapping.
    with pytest.raises(ConfigError) as info:
        build_definitions(project)
    (problem,) = info.value.problems
    assert (problem.sync, problem.field) == ("salesforce_accounts", "mappings[1].target")
    assert "Industri" in problem.message and "check --refresh" in problem.fix
