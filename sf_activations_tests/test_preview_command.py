"""`sf-activations preview`: the sync tester on the demo project, against the emulator."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import polars as pl
import pytest

from sf_activations.cli import main
from sf_activations.config import load_project
from sf_activations.demo import demo_org, emulator_environment
from sf_activations.demo_project import DEMO_PROJECT_DIR
from sf_activations.demo_project.sample_data import write_sample_data
from sf_activations.emulator.server import EmulatorServer
from sf_activations.sync.state import StateStore
from sf_activations.warehouse.duckdb import DuckDBWarehouse


@pytest.fixture
def project(emulator: EmulatorServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The demo project with a small warehouse built (sample data and models), nothing synced."""
    emulator.emulator.reset(demo_org())
    for key, value in emulator_environment(emulator, tmp_path).items():
        monkeypatch.setenv(key, value)
    root = tmp_path / "project"
    shutil.copytree(DEMO_PROJECT_DIR, root, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    warehouse = DuckDBWarehouse.at(os.environ["SF_ACTIVATIONS_WAREHOUSE"])
    write_sample_data(warehouse, accounts=300)
    for model in load_project(root).models.values():
        warehouse.materialize_model(model.name, model.sql)
    return root


def test_preview_of_a_first_sync_sends_nothing(
    project: Path, emulator: EmulatorServer, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["preview", "salesforce_accounts", "--project", str(project), "--rows", "2"]) == 0
    out = capsys.readouterr().out
    assert "salesforce_accounts[__all__] -> Account (update_or_create)" in out
    assert "would upsert" in out and "Account record(s) via" in out
    assert "invalid: key" in out  # the sample data holds rows Salesforce would refuse
    assert "nothing was sent" in out
    assert emulator.org.count("Account") == 0
    with StateStore(os.environ["SF_ACTIVATIONS_STATE"]) as state:
        assert state.counts("salesforce_accounts") == {"synced": 0, "pending": 0}


def test_preview_names_an_unknown_sync(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["preview", "salesforce_acounts", "--project", str(project)]) == 1
    out = capsys.readouterr().out
    assert "no sync named 'salesforce_acounts'" in out and "salesforce_accounts" in out


def test_preview_of_a_model_not_built(
    emulator: EmulatorServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    emulator.emulator.reset(demo_org())
    for key, value in emulator_environment(emulator, tmp_path).items():
        monkeypatch.setenv(key, value)
    root = tmp_path / "project"
    shutil.copytree(DEMO_PROJECT_DIR, root, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    DuckDBWarehouse.at(os.environ["SF_ACTIVATIONS_WAREHOUSE"]).replace_table(
        "unrelated", pl.DataFrame({"x": [1]})
    )
    assert main(["preview", "salesforce_accounts", "--project", str(root)]) == 1
    assert "materialize 'accounts' first" in capsys.readouterr().out


def test_a_hash_partitioned_sync_is_previewed_bucket_by_bucket(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sync_file = project / "syncs" / "salesforce_accounts.yaml"
    text = sync_file.read_text()
    assert "partitions: none" in text
    sync_file.write_text(text.replace("partitions: none", "partitions: {kind: hash, buckets: 2}"))
    assert main(["preview", "salesforce_accounts", "--project", str(project), "--rows", "0"]) == 0
    out = capsys.readouterr().out
    counts = [
        int(line.split("row(s) in the model")[0].rsplit(" ", 2)[-2])
        for line in out.splitlines()
        if "row(s) in the model" in line
    ]
    assert "salesforce_accounts[b00]" in out and "salesforce_accounts[b01]" in out
    assert len(counts) == 2 and sum(counts) == 299 and min(counts) > 0
    assert (
        main(["preview", "salesforce_accounts", "--project", str(project), "--partition", "b01"])
        == 0
    )
    assert "salesforce_accounts[b00]" not in capsys.readouterr().out
