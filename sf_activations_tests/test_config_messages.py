"""Config error messages as a demanding user reads them: where, what, the value, what to do.

And never a secret, even one pasted where an environment variable's name belongs.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from sf_activations.config import ConfigError, load_project, resolve_credentials
from sf_activations_tests.test_config import GOOD_SYNC, PROJECT_YAML, make_project, problems_of


def test_wrong_value_names_line_value_and_fix(tmp_path: Path) -> None:
    sync = GOOD_SYNC.replace("batch_size: 5000", "batch_size: lots")
    (problem,) = problems_of(make_project(tmp_path, syncs={"acc": sync}))
    line = next(i for i, text in enumerate(sync.splitlines(), 1) if "batch_size" in text)
    assert f"syncs/acc.yaml:{line}, sync 'acc', field 'batch_size'" in problem
    assert "(got 'lots')" in problem
    assert "Fix: Write a whole number" in problem


def test_fraction_written_as_percent(tmp_path: Path) -> None:
    sync = GOOD_SYNC.replace("max_rejected_fraction: 0.1", "max_rejected_fraction: 5")
    (problem,) = problems_of(make_project(tmp_path, syncs={"acc": sync}))
    assert "field 'max_rejected_fraction'" in problem and "(got 5)" in problem
    assert "write 0.05 for 5%" in problem


def test_misspelt_setting_suggests_the_right_one(tmp_path: Path) -> None:
    sync = GOOD_SYNC.replace("lookup: External_Id__c", "lookp: External_Id__c")
    (problem,) = problems_of(make_project(tmp_path, syncs={"acc": sync}))
    assert "field 'mappings[1].lookp'" in problem
    assert "is not a known setting" in problem and "Did you mean 'lookup'?" in problem


def test_problem_in_a_list_points_at_its_line(tmp_path: Path) -> None:
    sync = GOOD_SYNC.replace("target: ParentId", "target: Parent Id")
    (problem,) = problems_of(make_project(tmp_path, syncs={"acc": sync}))
    line = next(i for i, text in enumerate(sync.splitlines(), 1) if "Parent Id" in text)
    assert f"acc.yaml:{line}, sync 'acc', field 'mappings[1].target'" in problem
    assert "'Parent Id' is not a Salesforce API name" in problem


def test_secret_pasted_as_env_var_name_is_not_echoed(tmp_path: Path) -> None:
    project = PROJECT_YAML.replace("password_env: SF_PASSWORD", "password_env: 'Tr0ub4dor&3'")
    (problem,) = problems_of(make_project(tmp_path, project=project))
    assert "field 'salesforce.password_env'" in problem
    assert "not the value itself" in problem
    assert "Tr0ub4dor" not in problem


def test_secret_setting_with_wrong_type_is_not_echoed(tmp_path: Path) -> None:
    # A number where an env var name belongs: the type error must not repeat it either.
    project = PROJECT_YAML.replace("security_token_env: SF_TOKEN", "security_token_env: 83724913")
    (problem,) = problems_of(make_project(tmp_path, project=project))
    assert "field 'salesforce.security_token_env'" in problem
    assert "83724913" not in problem


def test_unset_env_var_names_variable_line_and_fix(tmp_path: Path) -> None:
    root = make_project(tmp_path)
    config = load_project(root).config
    with pytest.raises(ConfigError) as info:
        resolve_credentials(
            config.salesforce, environ={"SF_TOKEN": "t0k3n"}, file=str(root / "sf_activations.yaml")
        )
    text = str(info.value)
    line = next(i for i, t in enumerate(PROJECT_YAML.splitlines(), 1) if "password_env" in t)
    assert f"sf_activations.yaml:{line}, field 'salesforce.password_env'" in text
    assert "environment variable SF_PASSWORD is not set" in text and "Export SF_PASSWORD" in text
    assert "t0k3n" not in text
