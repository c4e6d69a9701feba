"""What a failed run tells the user: the sync, the partition, the object, the setting, the fix.

And never a secret: not in the description, not in the metadata.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import dagster as dg
import pytest

from sf_activations.config import ConfigError
from sf_activations.defs import build_definitions
from sf_activations.demo import demo_org, emulator_environment
from sf_activations.demo_project import DEMO_PROJECT_DIR
from sf_activations.emulator.server import EmulatorServer
from sf_activations_tests.test_defs_emulator import raw_accounts, raw_contacts

ACCOUNTS_SYNC = dg.AssetKey(["salesforce", "salesforce_accounts"])
CONTACTS_SYNC = dg.AssetKey(["salesforce", "salesforce_contacts"])
ACCOUNTS_MODEL = dg.AssetKey(["accounts"])


@pytest.fixture
def project(emulator: EmulatorServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the demo project on the emulator, with small raw tables loaded."""
    from sf_activations.warehouse.duckdb import DuckDBWarehouse

    emulator.emulator.reset(demo_org())
    for key, value in emulator_environment(emulator, tmp_path).items():
        if key != "DAGSTER_HOME":
            monkeypatch.setenv(key, value)
    warehouse = DuckDBWarehouse.at(str(tmp_path / "warehouse.duckdb"))
    warehouse.replace_table("raw_accounts", raw_accounts())
    warehouse.replace_table("raw_contacts", raw_contacts())
    root = tmp_path / "project"
    shutil.copytree(DEMO_PROJECT_DIR, root, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    return root


def failure_of(
    defs: dg.Definitions, selection: list[dg.AssetKey], partition: str | None = None
) -> tuple[str, dict[str, object]]:
    """(description, metadata values) of the single failed step of materializing ``selection``."""
    assets = [a for a in defs.assets or [] if isinstance(a, dg.AssetsDefinition | dg.AssetSpec)]
    result = dg.materialize(
        assets,
        selection=selection,
        partition_key=partition,
        resources=dict(defs.resources or {}),
        raise_on_error=False,
    )
    assert not result.success
    (event,) = result.get_step_failure_events()
    user = event.step_failure_data.user_failure_data
    assert user is not None and user.description is not None, event.step_failure_data.error
    return user.description, {k: v.value for k, v in (user.metadata or {}).items()}


def test_refused_login_names_sync_partition_object_and_never_the_password(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    defs = build_definitions(project)
    assets = [a for a in defs.assets or [] if isinstance(a, dg.AssetsDefinition | dg.AssetSpec)]
    resources = dict(defs.resources or {})
    models = [ACCOUNTS_MODEL, dg.AssetKey(["contacts"])]
    assert dg.materialize(assets, selection=models, resources=resources).success
    monkeypatch.setenv("SF_PASSWORD", "Wr0ng-Pa55word")
    description, metadata = failure_of(defs, [CONTACTS_SYNC], "b01")
    assert "sync 'salesforce_contacts'" in description
    assert "partition 'b01'" in description and "object 'Contact'" in description
    assert "login refused" in description and "What to do:" in description
    # Names the variables to check (names are not secrets; their values are).
    assert "SF_PASSWORD" in description and "SF_USERNAME" in description
    assert metadata["sf/partition"] == "b01" and metadata["sf/object"] == "Contact"
    everything = description + repr(metadata)
    assert "Wr0ng-Pa55word" not in everything
    assert "emulatortoken" not in everything  # the (correct) security token either


def test_source_not_built_says_to_materialize_the_model(project: Path) -> None:
    defs = build_definitions(project)
    description, metadata = failure_of(defs, [ACCOUNTS_SYNC])
    assert "sync 'salesforce_accounts'" in description and "partition '__all__'" in description
    assert "table 'accounts' (model 'accounts') does not exist in the warehouse" in description
    assert "Materialize 'accounts' first" in description and "nothing was sent" in description
    assert metadata["sf/error_code"] == "SOURCE_NOT_BUILT"


def test_model_sql_error_names_the_file_and_the_warehouse_reason(project: Path) -> None:
    model_file = project / "models" / "accounts.sql"
    model_file.write_text(model_file.read_text().replace("from raw_accounts", "from raw_acounts"))
    description, metadata = failure_of(build_definitions(project), [ACCOUNTS_MODEL])
    assert f"{model_file}: the warehouse refused model 'accounts'" in description
    # DuckDB's own explanation, with its suggestion of the right name.
    assert "raw_acounts does not exist" in description and "raw_accounts" in description
    assert "What to do:" in description
    assert metadata["sf/model_file"] == str(model_file)

    model_file.write_text("select account_id, from where")
    description, _ = failure_of(build_definitions(project), [ACCOUNTS_MODEL])
    assert f"{model_file}: the warehouse refused model 'accounts'" in description
    assert "syntax error" in description.lower()
    assert "fix the SELECT in accounts.sql" in description


def test_describe_misfit_names_partition_and_setting(project: Path) -> None:
    sync_file = project / "syncs" / "salesforce_contacts.yaml"
    sync_file.write_text(sync_file.read_text().replace("target: Title}", "target: Titel}"))
    defs = build_definitions(project)
    accounts = [a for a in defs.assets or [] if isinstance(a, dg.AssetsDefinition | dg.AssetSpec)]
    assert dg.materialize(
        accounts,
        selection=[ACCOUNTS_MODEL, dg.AssetKey(["contacts"])],
        resources=dict(defs.resources or {}),
    ).success
    description, metadata = failure_of(defs, [CONTACTS_SYNC], "b02")
    assert "sync 'salesforce_contacts', partition 'b02', object 'Contact'" in description
    line = next(i for i, t in enumerate(sync_file.read_text().splitlines(), 1) if "Titel" in t)
    assert (
        f"salesforce_contacts.yaml:{line}, sync 'salesforce_contacts', field 'mappings[3].target'"
        in description
    )
    assert "has no field 'Titel'" in description and "nothing was sent" in description
    problems = metadata["sf/config_problems"]
    assert isinstance(problems, list) and len(problems) == 1


def test_unknown_object_fails_the_run_then_the_load(project: Path) -> None:
    sync_file = project / "syncs" / "salesforce_accounts.yaml"
    sync_file.write_text(sync_file.read_text().replace("object: Account", "object: Acount"))
    defs = build_definitions(project)
    assets = [a for a in defs.assets or [] if isinstance(a, dg.AssetsDefinition | dg.AssetSpec)]
    assert dg.materialize(
        assets, selection=[ACCOUNTS_MODEL], resources=dict(defs.resources or {})
    ).success
    description, metadata = failure_of(defs, [ACCOUNTS_SYNC])
    assert "sync 'salesforce_accounts'" in description and "object 'Acount'" in description
    assert "no object 'Acount' that the API user can see" in description
    assert "Check `object:` in salesforce_accounts.yaml" in description
    assert metadata["sf/error_code"] == "NOT_FOUND"
    # The run stored Salesforce's answer: the next load fails offline, at the `object:` line.
    with pytest.raises(ConfigError) as info:
        build_definitions(project)
    (problem,) = info.value.problems
    assert (problem.sync, problem.field, problem.line) == ("salesforce_accounts", "object", 3)
