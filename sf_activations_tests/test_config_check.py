"""`sf-activations check`: the describe-dependent config checks, against the emulator."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from sf_activations.check import check_project
from sf_activations.cli import main
from sf_activations.demo import demo_org, emulator_environment
from sf_activations.demo_project import DEMO_PROJECT_DIR
from sf_activations.emulator.server import EmulatorServer


@pytest.fixture
def project(emulator: EmulatorServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    emulator.emulator.reset(demo_org())
    for key, value in emulator_environment(emulator, tmp_path).items():
        monkeypatch.setenv(key, value)
    root = tmp_path / "project"
    shutil.copytree(DEMO_PROJECT_DIR, root, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    return root


def test_check_passes_on_the_demo_project(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["check", "--project", str(project)]) == 0
    out = capsys.readouterr().out
    assert "logged in to https://127.0.0.1:" in out
    assert "sync 'salesforce_contacts'" in out and "ready to sync" in out


def test_check_names_sync_and_field_that_do_not_fit(project: Path) -> None:
    sync_file = project / "syncs" / "salesforce_accounts.yaml"
    text = sync_file.read_text().replace("target: Website}", "target: CreatedDate}")
    sync_file.write_text(text.replace("target: Industry}", "target: Industri}"))
    result = check_project(project)
    assert not result.ok
    failures = [line for line in result.lines if line.startswith("FAIL")]
    assert any("salesforce_accounts" in f and "Industri" in f for f in failures), failures
    assert any("salesforce_accounts" in f and "CreatedDate" in f for f in failures), failures
    assert not any("salesforce_contacts" in f for f in failures)


def test_check_reports_missing_env_var(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SF_PASSWORD")
    result = check_project(project)
    assert not result.ok
    assert any("SF_PASSWORD is not set" in line for line in result.lines)
