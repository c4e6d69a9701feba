"""Add: insert junction records (OpportunityContactRole) once each, tracked by a text field."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from sf_activations.emulator.schema import FieldDef
from sf_activations.emulator.server import EmulatorServer
from sf_activations.salesforce import SalesforceClient
from sf_activations.sync.mapping import SyncConfigError
from sf_activations.sync.run import run_sync_partition
from sf_activations.sync.spec import FieldMapping, SyncKey, SyncSpec
from sf_activations.sync.state import StateStore
from sf_activations_tests.test_sync_emulator import writes

TRACKING = "Sync_Tracking_Id__c"


def add_spec(**overrides: object) -> SyncSpec:
    base: dict[str, object] = {
        "name": "roles",
        "source_model": "opportunity_contacts",
        "sobject": "OpportunityContactRole",
        "behavior": "add",
        "key": SyncKey(source="tracking_id", target=TRACKING),
        "mappings": (
            FieldMapping("opportunity_id", "OpportunityId"),
            FieldMapping("contact_email", "ContactId", lookup_field="Email"),
            FieldMapping("role", "Role"),
        ),
        "rest_threshold": 0,
    }
    base.update(overrides)
    return SyncSpec(**base)  # type: ignore[arg-type]


@pytest.fixture
def org(client: SalesforceClient, emulator: EmulatorServer) -> dict[str, str]:
    """Two opportunities, three contacts, and the tracking field on OpportunityContactRole."""
    emulator.org.schema.add_field(
        "OpportunityContactRole",
        FieldDef(name=TRACKING, label="Sync Tracking Id", type="string", length=80),
    )
    client.describe("OpportunityContactRole", refresh=True)
    opps = client.collection_insert(
        "Opportunity",
        [
            {"Name": f"Deal {i}", "StageName": "Prospecting", "CloseDate": "2026-12-31"}
            for i in range(2)
        ],
        keys=["o0", "o1"],
    )
    contacts = client.collection_insert(
        "Contact",
        [{"LastName": f"P{i}", "Email": f"p{i}@example.com"} for i in range(3)],
        keys=["c0", "c1", "c2"],
    )
    assert all(o.success for o in [*opps, *contacts])
    return {"o0": str(opps[0].salesforce_id), "o1": str(opps[1].salesforce_id)}


def roles(org: dict[str, str], pairs: list[tuple[str, int, str]]) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "tracking_id": [f"{o}-p{c}" for o, c, _ in pairs],
            "opportunity_id": [org[o] for o, _, _ in pairs],
            "contact_email": [f"p{c}@example.com" for _, c, _ in pairs],
            "role": [r for _, _, r in pairs],
        }
    )


def ocr_rows(client: SalesforceClient) -> dict[str, dict[str, object]]:
    rows = client.query(
        f"SELECT Id, {TRACKING}, OpportunityId, Contact.Email, Role FROM OpportunityContactRole"
    )
    return {str(r[TRACKING]): r for r in rows}


def test_roles_are_added_once(
    client: SalesforceClient, state: StateStore, org: dict[str, str]
) -> None:
    data = roles(org, [("o0", 0, "Decision Maker"), ("o0", 1, "Evaluator"), ("o1", 2, "Other")])
    first = run_sync_partition(add_spec(), data, client, state)
    assert (first.created, first.rejected) == (3, 0)
    got = ocr_rows(client)
    assert sorted(got) == ["o0-p0", "o0-p1", "o1-p2"]
    assert got["o0-p1"]["Role"] == "Evaluator" and got["o1-p2"]["OpportunityId"] == org["o1"]
    assert got["o1-p2"]["Contact"] == {"Email": "p2@example.com"}

    again = run_sync_partition(add_spec(), data, client, state)
    assert (again.created, again.unchanged) == (0, 3)
    assert writes(again.api_calls) == {} and "query" not in again.api_calls

    # Add never updates: a changed role is left as it was added.
    changed = data.with_columns(pl.lit("Other").alias("role"))
    run_sync_partition(add_spec(), changed, client, state)
    assert ocr_rows(client)["o0-p1"]["Role"] == "Evaluator"


def test_a_lost_state_does_not_add_twice(
    client: SalesforceClient, state: StateStore, org: dict[str, str], tmp_path: Path
) -> None:
    data = roles(org, [("o0", 0, "Decision Maker"), ("o1", 1, "Evaluator")])
    run_sync_partition(add_spec(), data, client, state)
    more = roles(org, [("o0", 0, "Decision Maker"), ("o1", 1, "Evaluator"), ("o1", 2, "Other")])
    with StateStore(tmp_path / "fresh.db") as fresh:
        report = run_sync_partition(add_spec(), more, client, fresh)
        assert (report.created, report.unchanged) == (1, 2)
        assert report.api_calls["query"] == 1
        assert fresh.counts("roles") == {"synced": 3, "pending": 0}
    assert sorted(ocr_rows(client)) == ["o0-p0", "o1-p1", "o1-p2"]


def test_an_add_key_must_be_a_text_field(
    client: SalesforceClient, state: StateStore, org: dict[str, str]
) -> None:
    data = roles(org, [("o0", 0, "Other")])
    with pytest.raises(SyncConfigError, match="is a picklist field"):
        run_sync_partition(add_spec(key=SyncKey("role", "Role")), data, client, state)
