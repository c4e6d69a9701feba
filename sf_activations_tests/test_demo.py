"""The demo end to end at small size: sample data, emulator, every sync, twice."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from sf_activations.cli import main
from sf_activations.demo import run_demo
from sf_activations.demo_project.sample_data import account_frame, contact_frame


def test_sample_data_has_about_two_percent_bad_rows() -> None:
    accounts = account_frame(3000)
    contacts = contact_frame(3000)
    assert accounts.height == 3000
    assert accounts["account_id"].n_unique() == 3000
    long_names = (accounts["name"].str.len_chars() > 255).sum()
    bad_tier = (accounts["tier"] == "Platinum").sum()
    assert 10 <= long_names <= 30 and 10 <= bad_tier <= 30
    missing_account = int(contacts["account_id"].str.starts_with("ACC-MISSING").sum())
    no_last_name = int(contacts["last_name"].is_null().sum())
    assert 0.01 < (missing_account + no_last_name) / contacts.height < 0.03
    # deterministic: the same seed gives the same data
    assert account_frame(50).equals(account_frame(50))


@pytest.mark.slow
def test_demo_end_to_end(tmp_path: Path) -> None:
    out = io.StringIO()
    result = run_demo(rows=300, work_dir=tmp_path / "demo", out=out)
    accounts, contacts = result.first["salesforce_accounts"], result.first["salesforce_contacts"]
    assert accounts.read == 299  # one of 300 is deleted in the source
    assert accounts.created + accounts.invalid + accounts.rejected == accounts.read
    assert accounts.rejected == 3  # the org's trigger refuses the Atlantis accounts
    assert contacts.partitions == 4
    assert contacts.created + contacts.invalid + contacts.rejected == contacts.read
    assert result.org_counts == {"Account": accounts.created, "Contact": contacts.created}
    # second run: nothing new is sent, every confirmed record is unchanged
    again_acc, again_con = (
        result.second["salesforce_accounts"],
        result.second["salesforce_contacts"],
    )
    assert (again_acc.created, again_acc.updated, again_acc.unchanged) == (0, 0, accounts.created)
    assert (again_con.created, again_con.updated, again_con.unchanged) == (0, 0, contacts.created)
    assert again_acc.api_calls < accounts.api_calls
    # The first run maps every row; the second only the invalid and refused ones (the rest
    # matched their stored source hash).
    assert (accounts.compared, contacts.compared) == (accounts.read, contacts.read)
    assert again_acc.compared == accounts.invalid + accounts.rejected
    assert again_con.compared == contacts.invalid + contacts.rejected
    text = out.getvalue()
    assert "salesforce_accounts" in text and "unchanged" in text
    assert "dagster dev" in text or "--serve" in text
    assert (tmp_path / "demo" / "demo.env").stat().st_mode & 0o077 == 0


def test_demo_is_a_cli_subcommand(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["demo", "--help"])
    assert "--rows" in capsys.readouterr().out
