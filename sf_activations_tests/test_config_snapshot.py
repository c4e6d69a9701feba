"""The describe snapshot: stored describes make load-time config errors possible offline."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import pytest

from sf_activations.check import check_project
from sf_activations.cli import main
from sf_activations.config import ConfigError, load_project
from sf_activations.config.snapshot import (
    REFRESH_COMMAND,
    SnapshotEntry,
    describe_to_api,
    load_snapshot,
    save_describe,
    save_missing,
    snapshot_problems,
)
from sf_activations.defs import build_definitions
from sf_activations.demo import demo_org, emulator_environment
from sf_activations.demo_project import DEMO_PROJECT_DIR
from sf_activations.emulator.server import EmulatorServer
from sf_activations.sync.model import ObjectDescribe

TAKEN = datetime(2026, 3, 1, 9, 30, tzinfo=UTC)


def org_describe(sobject: str) -> ObjectDescribe:
    """The demo org's describe of ``sobject``, as the API would answer it (no network)."""
    return ObjectDescribe.from_api(demo_org().describe(sobject))


def with_field(describe: ObjectDescribe, name: str, **changes: object) -> ObjectDescribe:
    fields = tuple(
        replace(f, **changes)  # type: ignore[arg-type]
        if f.name == name
        else f
        for f in describe.fields
    )
    return replace(describe, fields=fields)


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the demo project whose state (and so snapshot) lives in tmp_path/state."""
    root = tmp_path / "project"
    shutil.copytree(DEMO_PROJECT_DIR, root, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    monkeypatch.setenv("SF_ACTIVATIONS_STATE", str(tmp_path / "state" / "state.sqlite"))
    return root


def test_describe_round_trips_through_the_snapshot(tmp_path: Path) -> None:
    account = org_describe("Account")
    path = save_describe(tmp_path, account, instance_url="https://x.example", fetched_at=TAKEN)
    assert path == tmp_path / "account.json"
    assert json.loads(path.read_text())["fetched_at"] == "2026-03-01T09:30:00+00:00"
    entry = load_snapshot(tmp_path)["account"]
    assert entry.describe == account
    assert ObjectDescribe.from_api(describe_to_api(account)) == account
    assert (entry.fetched_at, entry.instance_url) == (TAKEN, "https://x.example")
    tier = entry.describe.field("Tier__c") if entry.describe else None
    assert tier is not None and tier.picklist_values == ("Gold", "Silver", "Bronze")


def test_unreadable_snapshot_files_are_ignored(tmp_path: Path) -> None:
    save_describe(tmp_path, org_describe("Contact"), fetched_at=TAKEN)
    (tmp_path / "account.json").write_text("{not json")
    (tmp_path / "lead.json").write_text(json.dumps({"format": 99}))
    assert set(load_snapshot(tmp_path)) == {"contact"}
    assert load_snapshot(tmp_path / "absent") == {}


def test_object_names_never_become_paths(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not a Salesforce object API name"):
        save_missing(tmp_path, "../../etc/passwd", "NOT_FOUND")


def test_no_snapshot_loads_offline(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["describe", "--project", str(project)]) == 0
    assert "no describe snapshot" in capsys.readouterr().out
    defs = build_definitions(project)
    assert dg.AssetKey(["salesforce", "salesforce_accounts"]) in {
        k for a in defs.assets or [] if isinstance(a, dg.AssetsDefinition) for k in a.keys
    }
    assert not load_project(project).describe_dir.exists()


def test_fitting_snapshot_loads(project: Path) -> None:
    describe_dir = load_project(project).describe_dir
    for name in ("Account", "Contact"):
        save_describe(describe_dir, org_describe(name), fetched_at=TAKEN)
    assert build_definitions(project).assets


def test_read_only_field_in_snapshot_fails_build_definitions(project: Path) -> None:
    describe_dir = load_project(project).describe_dir
    # Tier__c became a formula field in Salesforce: it can no longer be written.
    account = with_field(
        org_describe("Account"), "Tier__c", calculated=True, createable=False, updateable=False
    )
    save_describe(describe_dir, account, fetched_at=TAKEN)
    with pytest.raises(ConfigError) as info:
        build_definitions(project)
    (problem,) = info.value.problems
    assert problem.file.endswith("syncs/salesforce_accounts.yaml")
    assert (problem.sync, problem.field) == ("salesforce_accounts", "mappings[2].target")
    text = str(info.value)
    assert "Account.Tier__c" in text and "read-only" in text
    assert "remove the mapping or grant edit access" in text
    assert f"run `{REFRESH_COMMAND} --project {project}`" in text
    assert "taken 2026-03-01 09:30 UTC" in text
    # The escape hatch `check --refresh` uses: load without the snapshot.
    assert build_definitions(project, check_snapshot=False).assets


def test_snapshot_problems_name_the_setting_at_fault(project: Path) -> None:
    spec = load_project(project).sync("salesforce_contacts")
    contact = with_field(org_describe("Contact"), "External_Id__c", external_id=False)
    contact = replace(contact, fields=tuple(f for f in contact.fields if f.name != "Title"))
    # The parent's lookup field is not an External ID either: the lookup mapping is at fault.
    account = with_field(
        org_describe("Account"), "External_Id__c", external_id=False, id_lookup=False
    )
    snapshot = {
        "contact": _entry(contact),
        "account": _entry(account),
    }
    problems = snapshot_problems([spec], snapshot)
    fields = {p.field: p for p in problems}
    assert set(fields) == {"key.target", "mappings[3].target", "mappings[5].lookup"}
    assert "not an External ID" in fields["key.target"].message
    assert "has no field 'Title'" in fields["mappings[3].target"].message
    assert "Account.External_Id__c" in fields["mappings[5].lookup"].message
    assert all(p.sync == "salesforce_contacts" for p in problems)
    # The message does not repeat the file and sync that ConfigProblem already names.
    assert not any(p.message.startswith("sync ") for p in problems)


def test_missing_object_in_snapshot(project: Path) -> None:
    save_missing(load_project(project).describe_dir, "Account", "NOT_FOUND", fetched_at=TAKEN)
    with pytest.raises(ConfigError) as info:
        build_definitions(project)
    (problem,) = info.value.problems
    assert (problem.sync, problem.field) == ("salesforce_accounts", "object")
    assert "no object 'Account'" in problem.message and "__c" in problem.fix


def _entry(describe: ObjectDescribe) -> SnapshotEntry:
    return SnapshotEntry(describe.name, TAKEN, describe)


def test_check_stores_the_snapshot_and_refresh_rewrites_it(
    emulator: EmulatorServer,
    project: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    emulator.emulator.reset(demo_org())
    for key, value in emulator_environment(emulator, tmp_path).items():
        if key != "SF_ACTIVATIONS_STATE":
            monkeypatch.setenv(key, value)
    describe_dir = load_project(project).describe_dir
    # A stale snapshot: Tier__c was read-only when it was taken, and an object no sync uses.
    stale = with_field(org_describe("Account"), "Tier__c", calculated=True, updateable=False)
    save_describe(describe_dir, replace(stale, fields=stale.fields), fetched_at=TAKEN)
    save_describe(describe_dir, org_describe("Lead"), fetched_at=TAKEN)
    with pytest.raises(ConfigError):
        build_definitions(project)

    result = check_project(project, refresh=True)
    assert result.ok, result.lines
    stored = load_snapshot(describe_dir)
    # Both syncs' objects; Account also as the parent of Contact's lookup. Lead is dropped.
    assert set(stored) == {"account", "contact"}
    assert stored["account"].fetched_at > TAKEN
    assert stored["account"].instance_url == emulator.connection_info["instance_url"]
    assert build_definitions(project).assets

    capsys.readouterr()
    assert main(["describe", "--project", str(project)]) == 0
    out = capsys.readouterr().out
    lines = {line.split()[0]: line for line in out.splitlines()[1:]}
    assert set(lines) == {"Account", "Contact"}, out
    assert "fields" in lines["Account"] and emulator.connection_info["instance_url"] in out
    # `describe --refresh` is `check --refresh`: logs in, fetches, stores, says it is ready.
    assert main(["describe", "--refresh", "--project", str(project)]) == 0
    assert "ready to sync" in capsys.readouterr().out


def test_a_lead_or_contact_sync_is_checked_against_both_stored_objects() -> None:
    from sf_activations.config.snapshot import objects_needed
    from sf_activations.sync.spec import FieldMapping, SyncKey, SyncSpec

    spec = SyncSpec(
        name="people",
        source_model="people",
        sobject="Lead",
        behavior="lead_or_contact",
        key=SyncKey("id", "External_Id__c"),
        mappings=(FieldMapping("last_name", "LastName"), FieldMapping("x", "Nowhere__c")),
        source_file="syncs/people.yaml",
    )
    assert objects_needed(spec) == ["Lead", "Contact"]
    contact = with_field(org_describe("Contact"), "External_Id__c", unique=False)
    snapshot = {"lead": _entry(org_describe("Lead")), "contact": _entry(contact)}
    messages = [p.message for p in snapshot_problems([spec], snapshot)]
    assert any("Unique External ID on Contact too" in m for m in messages), messages
    assert any("neither Lead nor Contact has a writable field" in m for m in messages), messages
