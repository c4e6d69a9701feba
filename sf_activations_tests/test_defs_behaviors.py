"""Mirror, Delete, Add and Lead or Contact as a user meets them: a project folder of YAML sync
files, loaded by the config layer and materialized as Dagster assets against the emulator.

The engine's own tests (``test_sync_mirror.py``, ``test_sync_delete.py``, ``test_sync_add.py``,
``test_sync_multi.py``) cover each behavior in depth; these check that the YAML settings reach
the engine, that each run's real result reaches the materialization's metadata and the org, and
that a refused run or a refused file tells the user what to do.
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import dagster as dg
import polars as pl
import pytest

from sf_activations.config import ConfigError
from sf_activations.defs import build_definitions
from sf_activations.demo import emulator_environment
from sf_activations.emulator.schema import FieldDef
from sf_activations.emulator.server import EmulatorServer
from sf_activations.warehouse.duckdb import DuckDBWarehouse
from sf_activations_tests.test_defs_emulator import metadata_of, run

# The project reads the emulator's URL, CA and credentials from the variables the demo uses;
# the warehouse and the state live in the project folder.
PROJECT_YAML = """
warehouse:
  path: warehouse.duckdb
salesforce:
  login_url_env: SF_LOGIN_URL
  auth: password
  username_env: SF_USERNAME
  password_env: SF_PASSWORD
  security_token_env: SF_SECURITY_TOKEN
  ca_cert_env: SF_CA_CERT
state:
  path: .sf_state/state.sqlite
sources:
  - {name: raw_rows, table: raw_rows}
"""

MIRROR_SYNC = """
source: people
object: Contact
behavior: mirror
key: {source: person_id, target: External_Id__c}
mappings:
  - {source: last_name, target: LastName}
  - {source: email, target: Email}
"""

DELETE_SYNC = """
source: leavers
object: Contact
behavior: delete
key: {source: person_id, target: External_Id__c}
mappings: []
"""

LEAD_OR_CONTACT_SYNC = """
source: people
object: Lead
behavior: lead_or_contact
key: {source: person_id, target: External_Id__c}
mappings:
  - {source: last_name, target: LastName}
  - {source: company, target: Company}
  - {source: title, target: Title}
"""

TRACKING = "Sync_Tracking_Id__c"
ADD_SYNC = f"""
source: roles
object: OpportunityContactRole
behavior: add
key: {{source: tracking_id, target: {TRACKING}}}
mappings:
  - {{source: opportunity_id, target: OpportunityId}}
  - {{source: contact_email, target: ContactId, lookup: Email}}
  - {{source: role, target: Role}}
"""

COUNTS = ("records_read", "created", "updated", "unchanged", "deleted", "rejected", "invalid")


@pytest.fixture
def project_dir(emulator: EmulatorServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty project folder (no models, no syncs) whose YAML points at a fresh emulator."""
    for key, value in emulator_environment(emulator, tmp_path).items():
        if key.startswith("SF_") and not key.startswith("SF_ACTIVATIONS_"):
            monkeypatch.setenv(key, value)
    root = tmp_path / "project"
    (root / "models").mkdir(parents=True)
    (root / "syncs").mkdir()
    (root / "sf_activations.yaml").write_text(textwrap.dedent(PROJECT_YAML))
    return root


def add_model(root: Path, name: str, sql: str = "select * from raw_rows") -> dg.AssetKey:
    (root / "models" / f"{name}.sql").write_text(sql)
    return dg.AssetKey([name])


def add_sync(root: Path, name: str, body: str) -> tuple[Path, dg.AssetKey]:
    path = root / "syncs" / f"{name}.yaml"
    path.write_text(textwrap.dedent(body))
    return path, dg.AssetKey(["salesforce", name])


def load_raw(root: Path, frame: pl.DataFrame) -> DuckDBWarehouse:
    """The project's warehouse, with ``frame`` as the declared source table ``raw_rows``."""
    warehouse = DuckDBWarehouse.at(str(root / "warehouse.duckdb"))
    warehouse.replace_table("raw_rows", frame)
    return warehouse


def counts(md: dict[str, Any]) -> dict[str, int]:
    return {k: md[f"sf/{k}"] for k in COUNTS}


def failure_of(result: dg.ExecuteInProcessResult) -> tuple[str, dict[str, Any]]:
    """(description, metadata values) of the run's single failed step (a ``dg.Failure``)."""
    assert not result.success
    (event,) = result.get_step_failure_events()
    user = event.step_failure_data.user_failure_data
    assert user is not None and user.description is not None, event.step_failure_data.error
    return user.description, {k: v.value for k, v in (user.metadata or {}).items()}


def by_external_id(emulator: EmulatorServer, sobject: str) -> dict[str, dict[str, Any]]:
    """The org's live (not deleted) records of ``sobject`` by External_Id__c."""
    return {str(r["External_Id__c"]): r for r in emulator.org.rows(sobject)}


def people(n: int) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "person_id": [f"p{i:02d}" for i in range(n)],
            "last_name": [f"Person{i}" for i in range(n)],
            "email": [f"p{i}@example.com" for i in range(n)],
        }
    )


def test_mirror_deletes_what_left_the_model_and_guards_against_a_mass_delete(
    project_dir: Path, emulator: EmulatorServer
) -> None:
    model = add_model(project_dir, "people")
    sync_file, sync = add_sync(project_dir, "contacts_mirror", MIRROR_SYNC)
    warehouse = load_raw(project_dir, people(10))
    defs = build_definitions(project_dir)
    assert run(defs, [model]).success

    first = metadata_of(run(defs, [sync]), sync)
    assert counts(first) == dict.fromkeys(COUNTS, 0) | {"records_read": 10, "created": 10}
    ids = {k: r["Id"] for k, r in by_external_id(emulator, "Contact").items()}
    assert sorted(ids) == [f"p{i:02d}" for i in range(10)]

    # Two people leave the model: their Contacts go to the recycle bin, the rest stay as they are.
    warehouse.execute("delete from raw_rows where person_id in ('p03', 'p07')")
    assert run(defs, [model]).success
    second = metadata_of(run(defs, [sync]), sync)
    assert counts(second) == dict.fromkeys(COUNTS, 0) | {
        "records_read": 8,
        "unchanged": 8,
        "deleted": 2,
    }
    left = by_external_id(emulator, "Contact")
    assert sorted(left) == [f"p{i:02d}" for i in range(10) if i not in (3, 7)]
    binned = [r for r in emulator.org.rows("Contact", include_deleted=True) if r["IsDeleted"]]
    assert sorted(r["Id"] for r in binned) == sorted([ids["p03"], ids["p07"]])

    # The model loses most of its rows (a broken upstream, say) and one row changes: the guard
    # fails the materialization before anything is sent, not even the update.
    warehouse.execute("delete from raw_rows where person_id not in ('p00', 'p01')")
    warehouse.execute("update raw_rows set last_name = 'Renamed' where person_id = 'p00'")
    assert run(defs, [model]).success
    tripped = run(defs, [sync])
    description, md = failure_of(tripped)
    assert not tripped.get_asset_materialization_events()
    assert md["sf/error_code"] == "DELETE_GUARD"
    assert (md["sf/sync"], md["sf/partition"], md["sf/object"]) == (
        "contacts_mirror",
        "__all__",
        "Contact",
    )
    assert "sync 'contacts_mirror'" in description
    assert "delete 6 of the 8 Contact records the sync tracks (75%)" in description
    assert "more than max_delete_fraction (50%)" in description
    assert "nothing was sent" in description
    assert f"raise max_delete_fraction in {sync_file}" in description
    assert f"raise max_delete_fraction in {sync_file}" in md["sf/fix"]
    assert by_external_id(emulator, "Contact") == left  # nothing deleted, nothing updated

    # The user confirms the rows are meant to go: max_delete_fraction: 1 lets the run through.
    sync_file.write_text(sync_file.read_text() + "max_delete_fraction: 1\n")
    defs = build_definitions(project_dir)
    allowed = metadata_of(run(defs, [sync]), sync)
    assert counts(allowed) == dict.fromkeys(COUNTS, 0) | {
        "records_read": 2,
        "updated": 1,
        "unchanged": 1,
        "deleted": 6,
    }
    final = by_external_id(emulator, "Contact")
    assert sorted(final) == ["p00", "p01"]
    assert (final["p00"]["LastName"], final["p00"]["Id"]) == ("Renamed", ids["p00"])


def test_delete_sync_removes_the_listed_records_once(
    project_dir: Path, emulator: EmulatorServer
) -> None:
    made = {
        f"k{i}": emulator.org.create("Contact", {"LastName": f"P{i}", "External_Id__c": f"k{i}"})
        for i in range(4)
    }
    model = add_model(project_dir, "leavers")
    sync_file, sync = add_sync(project_dir, "purge_contacts", DELETE_SYNC)
    # K3 finds k3 (the External ID ignores case); nobody has no record: nothing to delete.
    load_raw(project_dir, pl.DataFrame({"person_id": ["k1", "K3", "nobody"]}))
    defs = build_definitions(project_dir)
    assert run(defs, [model]).success

    first = metadata_of(run(defs, [sync]), sync)
    # "nobody" is done too: nothing to delete, so it counts as unchanged, not as pending.
    assert counts(first) == dict.fromkeys(COUNTS, 0) | {
        "records_read": 3,
        "deleted": 2,
        "unchanged": 1,
    }
    assert first["sf/pending_retries"] == 0
    assert sorted(by_external_id(emulator, "Contact")) == ["k0", "k2"]
    binned = [r for r in emulator.org.rows("Contact", include_deleted=True) if r["IsDeleted"]]
    assert sorted(r["Id"] for r in binned) == sorted([made["k1"], made["k3"]])

    # Each key is deleted once: the same rows again send nothing and look nothing up.
    again = metadata_of(run(defs, [sync]), sync)
    assert (again["sf/deleted"], again["sf/unchanged"]) == (0, 3)
    assert "query" not in again["sf/api_calls"] and not again["sf/bulk_job_ids"]

    # A delete sync that maps fields is refused when the project loads, naming the setting.
    sync_file.write_text(
        sync_file.read_text().replace(
            "mappings: []", "mappings:\n  - {source: person_id, target: LastName}"
        )
    )
    text = the_load_problem(project_dir, sync_file, "purge_contacts", "mappings")
    assert "purge_contacts.yaml" in text and "sync 'purge_contacts'" in text
    assert "field 'mappings'" in text and "takes no mappings" in text and "mappings: []" in text


def test_lead_or_contact_updates_the_contact_and_creates_the_lead(
    project_dir: Path, emulator: EmulatorServer
) -> None:
    contact_id = emulator.org.create("Contact", {"LastName": "Known", "External_Id__c": "k1"})
    model = add_model(project_dir, "people")
    _, sync = add_sync(project_dir, "people_to_leads", LEAD_OR_CONTACT_SYNC)
    load_raw(
        project_dir,
        pl.DataFrame(
            {
                "person_id": ["k1", "k2"],
                "last_name": ["Known", "New"],
                "company": ["Acme", "Initech"],
                "title": ["CTO", "Analyst"],
            }
        ),
    )
    defs = build_definitions(project_dir)
    assert run(defs, [model]).success

    md = metadata_of(run(defs, [sync]), sync)
    assert md["sf/object"] == "Lead"
    assert counts(md) == dict.fromkeys(COUNTS, 0) | {"records_read": 2, "created": 1, "updated": 1}
    contacts = by_external_id(emulator, "Contact")
    assert sorted(contacts) == ["k1"]  # no Contact created
    assert (contacts["k1"]["Id"], contacts["k1"]["Title"]) == (contact_id, "CTO")
    leads = by_external_id(emulator, "Lead")
    assert sorted(leads) == ["k2"]  # no Lead for the key a Contact has
    assert (leads["k2"]["LastName"], leads["k2"]["Company"], leads["k2"]["Title"]) == (
        "New",
        "Initech",
        "Analyst",
    )

    again = metadata_of(run(defs, [sync]), sync)
    assert (again["sf/unchanged"], again["sf/created"], again["sf/updated"]) == (2, 0, 0)


HIRE = "new.hire@example.org"  # no Contact has this address until a test creates one


def roles_project(
    root: Path, emulator: EmulatorServer
) -> tuple[dg.Definitions, dg.AssetKey, list[str], dict[str, str]]:
    """An Add sync into OpportunityContactRole: the tracking field, two Opportunities, three
    Contacts, and a model of four roles (one for a person no Contact has), built.

    Returns the definitions, the sync's asset key, the Opportunity Ids and the Contact Ids by
    email.
    """
    emulator.org.schema.add_field(
        "OpportunityContactRole",
        FieldDef(name=TRACKING, label="Sync Tracking Id", type="string", length=80),
    )
    opps = [
        emulator.org.create(
            "Opportunity",
            {"Name": f"Deal {i}", "StageName": "Prospecting", "CloseDate": "2026-12-31"},
        )
        for i in range(2)
    ]
    contact_ids = {
        f"p{i}@example.com": emulator.org.create(
            "Contact", {"LastName": f"P{i}", "Email": f"p{i}@example.com"}
        )
        for i in range(3)
    }
    # The model builds the key from the pair, as docs/configuration.md suggests.
    model = add_model(
        root,
        "roles",
        "select opportunity_id || '-' || contact_email as tracking_id, * from raw_rows",
    )
    _, sync = add_sync(root, "opportunity_roles", ADD_SYNC)
    load_raw(
        root,
        pl.DataFrame(
            {
                "opportunity_id": [opps[0], opps[0], opps[1], opps[1]],
                "contact_email": ["p0@example.com", "p1@example.com", "p2@example.com", HIRE],
                "role": ["Decision Maker", "Evaluator", "Other", "Other"],
            }
        ),
    )
    defs = build_definitions(root)
    assert run(defs, [model]).success
    return defs, sync, opps, contact_ids


def change_roles(root: Path, defs: dg.Definitions) -> None:
    DuckDBWarehouse.at(str(root / "warehouse.duckdb")).execute(
        "update raw_rows set role = 'Influencer'"
    )
    assert run(defs, [dg.AssetKey(["roles"])]).success


def test_add_sync_inserts_opportunity_contact_roles_once(
    project_dir: Path, emulator: EmulatorServer
) -> None:
    defs, sync, opps, contact_ids = roles_project(project_dir, emulator)

    first = metadata_of(run(defs, [sync]), sync)
    assert counts(first) == dict.fromkeys(COUNTS, 0) | {
        "records_read": 4,
        "created": 3,
        "rejected": 1,
    }
    assert len(first["sf/bulk_job_ids"]) == 1  # Add always inserts through Bulk
    (rejected,) = [dict(r.data) for r in first["sf/rejected_sample"].records]
    assert (rejected["key"], rejected["code"]) == (f"{opps[1]}-{HIRE}", "INVALID_FIELD")
    assert HIRE in rejected["message"] and "Email" in rejected["message"]
    roles = {str(r[TRACKING]): r for r in emulator.org.rows("OpportunityContactRole")}
    got = {k: (r["OpportunityId"], r["ContactId"], r["Role"]) for k, r in roles.items()}
    assert got == {
        f"{opps[0]}-p0@example.com": (opps[0], contact_ids["p0@example.com"], "Decision Maker"),
        f"{opps[0]}-p1@example.com": (opps[0], contact_ids["p1@example.com"], "Evaluator"),
        f"{opps[1]}-p2@example.com": (opps[1], contact_ids["p2@example.com"], "Other"),
    }

    # Add never updates: changed roles are not sent and nothing is added twice; the refused
    # row is retried (and refused again: its Contact still does not exist).
    change_roles(project_dir, defs)
    again = metadata_of(run(defs, [sync]), sync)
    assert (again["sf/created"], again["sf/updated"], again["sf/rejected"]) == (0, 0, 1)
    assert again["sf/pending_retries"] == 1
    after = {str(r[TRACKING]): r["Role"] for r in emulator.org.rows("OpportunityContactRole")}
    assert after == {k: v[2] for k, v in got.items()}

    # Once the Contact exists, the pending row is added, with the model's current role.
    hire_id = emulator.org.create("Contact", {"LastName": "Hire", "Email": HIRE})
    third = metadata_of(run(defs, [sync]), sync)
    assert (third["sf/created"], third["sf/rejected"], third["sf/pending_retries"]) == (1, 0, 0)
    added = {str(r[TRACKING]): r for r in emulator.org.rows("OpportunityContactRole")}
    assert len(added) == 4
    assert (added[f"{opps[1]}-{HIRE}"]["ContactId"], added[f"{opps[1]}-{HIRE}"]["Role"]) == (
        hire_id,
        "Influencer",
    )


def test_add_sync_accounts_for_every_row_it_read(
    project_dir: Path, emulator: EmulatorServer
) -> None:
    defs, sync, _, _ = roles_project(project_dir, emulator)
    assert run(defs, [sync]).success
    change_roles(project_dir, defs)
    again = metadata_of(run(defs, [sync]), sync)
    # The three changed roles are left alone, as Add does: they are still this sync's records.
    assert sum(again[f"sf/{k}"] for k in COUNTS if k != "records_read") == 4
    # ... and, left alone once, they are not compared again on the next run (only the retry).
    assert metadata_of(run(defs, [sync]), sync)["sf/rows_compared"] == 1


def test_a_partitioned_mirror_sync_is_refused_at_load(project_dir: Path) -> None:
    add_model(project_dir, "people")
    sync_file, _ = add_sync(
        project_dir, "contacts_mirror", MIRROR_SYNC + "partitions: {kind: hash, buckets: 2}\n"
    )
    text = the_load_problem(project_dir, sync_file, "contacts_mirror", "partitions.kind")
    assert "contacts_mirror.yaml" in text and "field 'partitions.kind'" in text
    assert "with partitions: hash" in text and "Use partitions: none" in text


def the_load_problem(project_dir: Path, sync_file: Path, sync: str, setting: str) -> str:
    """Loading the project fails with exactly one problem, naming this file, sync and setting;
    the whole error's text."""
    with pytest.raises(ConfigError) as info:
        build_definitions(project_dir)
    (problem,) = info.value.problems
    assert (Path(problem.file).resolve(), problem.sync, problem.field) == (
        sync_file.resolve(),
        sync,
        setting,
    )
    return str(info.value)
