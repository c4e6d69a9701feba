"""The project loader: good projects become SyncSpecs; bad ones fail naming file, sync and field."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from sf_activations.config import ConfigError, load_project, resolve_credentials
from sf_activations.demo_project import DEMO_PROJECT_DIR
from sf_activations.sync.spec import FieldMapping, PartitionSpec, SyncKey

PROJECT_YAML = """
warehouse:
  path: wh.duckdb
salesforce:
  login_url: https://test.salesforce.com
  auth: password
  username: api@example.com
  password_env: SF_PASSWORD
  security_token_env: SF_TOKEN
"""

GOOD_SYNC = """
source: accounts
object: Account
behavior: Update or Create
key: {source: account_id, target: External_Id__c}
mappings:
  - {source: name, target: Name}
  - {source: parent_id, target: ParentId, lookup: External_Id__c}
partitions: {kind: hash, buckets: 8}
batch_size: 5000
max_rejected_fraction: 0.1
schedule: "0 6 * * *"
"""


def make_project(
    root: Path,
    *,
    project: str = PROJECT_YAML,
    models: dict[str, str] | None = None,
    syncs: dict[str, str] | None = None,
) -> Path:
    (root / "models").mkdir(parents=True, exist_ok=True)
    (root / "syncs").mkdir(parents=True, exist_ok=True)
    (root / "sf_activations.yaml").write_text(textwrap.dedent(project))
    for name, sql in (
        models if models is not None else {"accounts": "select 1 as account_id"}
    ).items():
        (root / "models" / f"{name}.sql").write_text(sql)
    for name, body in (syncs or {}).items():
        (root / "syncs" / f"{name}.yaml").write_text(textwrap.dedent(body))
    return root


def problems_of(root: Path) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_project(root)
    return [str(p) for p in info.value.problems]


def test_good_sync_becomes_spec(tmp_path: Path) -> None:
    root = make_project(tmp_path, syncs={"acc": GOOD_SYNC})
    project = load_project(root)
    (spec,) = project.syncs
    assert spec.name == "acc"
    assert spec.behavior == "update_or_create"  # "Update or Create" normalized
    assert spec.key == SyncKey("account_id", "External_Id__c")
    assert spec.mappings[1] == FieldMapping("parent_id", "ParentId", "External_Id__c")
    assert spec.partitions == PartitionSpec("hash", 8)
    assert (spec.batch_size, spec.max_rejected_fraction, spec.schedule) == (5000, 0.1, "0 6 * * *")
    assert spec.source_file.endswith("syncs/acc.yaml")
    assert project.warehouse_path == (tmp_path / "wh.duckdb").resolve()


def test_unknown_model_names_file_sync_field(tmp_path: Path) -> None:
    root = make_project(
        tmp_path, syncs={"acc": GOOD_SYNC.replace("source: accounts", "source: acounts")}
    )
    (problem,) = problems_of(root)
    assert "syncs/acc.yaml" in problem
    assert "sync 'acc'" in problem
    assert "field 'source'" in problem
    assert "unknown model 'acounts'" in problem and "known: accounts" in problem
    assert "Fix:" in problem


def test_bad_yaml_names_file_and_line(tmp_path: Path) -> None:
    root = make_project(tmp_path, syncs={"broken": "source: accounts\nobject: [Account\n"})
    (problem,) = problems_of(root)
    assert "syncs/broken.yaml" in problem
    assert "not valid YAML at line" in problem


def test_unknown_behavior(tmp_path: Path) -> None:
    root = make_project(tmp_path, syncs={"acc": GOOD_SYNC.replace("Update or Create", "merge")})
    (problem,) = problems_of(root)
    assert "sync 'acc'" in problem and "field 'behavior'" in problem
    assert "unknown behavior 'merge'" in problem and "update_or_create" in problem


def test_missing_env_var_name_for_auth_flow(tmp_path: Path) -> None:
    project = PROJECT_YAML.replace("  password_env: SF_PASSWORD\n", "")
    root = make_project(tmp_path, project=project)
    (problem,) = problems_of(root)
    assert "sf_activations.yaml" in problem and "field 'salesforce'" in problem
    assert "auth 'password' needs password_env" in problem


def test_secret_written_in_yaml_is_refused(tmp_path: Path) -> None:
    project = PROJECT_YAML.replace("password_env: SF_PASSWORD", "password: hunter2")
    (problem,) = problems_of(make_project(tmp_path, project=project))
    assert "'password' must not be written in the YAML" in problem
    assert "password_env" in problem
    assert "hunter2" not in problem


def test_bad_env_var_name(tmp_path: Path) -> None:
    project = PROJECT_YAML.replace("SF_PASSWORD", "my password")
    (problem,) = problems_of(make_project(tmp_path, project=project))
    assert "field 'salesforce.password_env'" in problem
    assert "not an environment variable name" in problem


def test_several_problems_reported_together(tmp_path: Path) -> None:
    bad_key = GOOD_SYNC.replace("target: External_Id__c}", "target: Id}")
    typo = GOOD_SYNC.replace("mappings:", "mapings:")
    root = make_project(
        tmp_path, syncs={"a": bad_key, "b": typo, "c": GOOD_SYNC.replace("0 6 * * *", "every day")}
    )
    problems = problems_of(root)
    assert len(problems) == 4, problems
    text = "\n".join(problems)
    assert "sync 'a', field 'key.target'" in text and "Salesforce assigns it" in text
    assert "sync 'b', field 'mapings'" in text and "not a known setting" in text
    assert "sync 'b', field 'mappings'" in text and "is required" in text
    assert "sync 'c', field 'schedule'" in text and "not a cron schedule" in text


def test_mapping_problems_point_at_the_mapping(tmp_path: Path) -> None:
    dup = GOOD_SYNC.replace("target: ParentId, lookup: External_Id__c", "target: name")
    (problem,) = problems_of(make_project(tmp_path, syncs={"acc": dup}))
    assert "field 'mappings[1].target'" in problem and "mapped twice" in problem


def test_time_partitions_need_time_partitioned_model(tmp_path: Path) -> None:
    body = GOOD_SYNC.replace("partitions: {kind: hash, buckets: 8}", "partitions: time")
    (problem,) = problems_of(make_project(tmp_path, syncs={"acc": body}))
    assert "field 'partitions.kind'" in problem and "time_partitions" in problem


def test_model_lineage_from_sql(tmp_path: Path) -> None:
    models = {
        "accounts": "select * from raw_accounts",
        "contacts": "with c as (select * from raw_contacts) select c.* from c join accounts a on a.id = c.account_id -- from orders",
    }
    project_yaml = (
        PROJECT_YAML
        + "sources:\n  - {name: raw_accounts, table: raw_accounts}\n  - {name: raw_contacts, table: crm.contacts, asset_key: [dbt, contacts]}\n"
    )
    project = load_project(make_project(tmp_path, project=project_yaml, models=models))
    assert project.models["accounts"].deps == ("raw_accounts",)
    assert project.models["contacts"].deps == ("accounts", "raw_contacts")
    assert project.sources["raw_contacts"].asset_key == ("dbt", "contacts")
    assert project.table_of("raw_contacts") == "crm.contacts"


def test_after_must_name_a_sync(tmp_path: Path) -> None:
    (problem,) = problems_of(make_project(tmp_path, syncs={"acc": GOOD_SYNC + "after: [nope]\n"}))
    assert "field 'after'" in problem and "'nope'" in problem


def test_resolve_credentials_reads_env_and_names_missing_var(tmp_path: Path) -> None:
    project = load_project(make_project(tmp_path))
    creds = resolve_credentials(
        project.config.salesforce, environ={"SF_PASSWORD": "pw", "SF_TOKEN": "tok"}
    )
    assert (creds.username, creds.password, creds.security_token) == (
        "api@example.com",
        "pw",
        "tok",
    )
    assert creds.login_url == "https://test.salesforce.com"
    assert "pw" not in repr(creds)
    with pytest.raises(ConfigError) as info:
        resolve_credentials(project.config.salesforce, environ={"SF_PASSWORD": "pw"})
    assert "SF_TOKEN is not set" in str(info.value)


def test_demo_project_loads() -> None:
    project = load_project(DEMO_PROJECT_DIR)
    assert {s.name for s in project.syncs} == {
        "salesforce_accounts",
        "salesforce_contacts",
        "salesforce_contact_enrichment",
    }
    assert project.models["contacts"].deps == ("accounts", "raw_contacts")
    assert project.models["contact_enrichment"].deps == ("raw_contact_enrichment",)
    assert project.sync_after["salesforce_contacts"] == ("salesforce_accounts",)
    assert project.sync_after["salesforce_contact_enrichment"] == ("salesforce_contacts",)
