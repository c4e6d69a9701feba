"""The demo end to end at small size: sample data, emulator, every sync, twice."""

from __future__ import annotations

import io
from pathlib import Path

import polars as pl
import pytest

from sf_activations.cli import main
from sf_activations.demo import run_demo
from sf_activations.demo_project.sample_data import (
    UNKNOWN_EMAIL_DOMAIN,
    account_frame,
    contact_frame,
    contacts_in_salesforce,
    enrichment_frame,
)

ENRICHMENT = "salesforce_contact_enrichment"
NO_MATCH = "NO_MATCHING_RECORD"


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


def test_enrichment_file_has_known_emails_in_other_cases_and_a_few_unknown() -> None:
    accounts, contacts = account_frame(3000), contact_frame(3000)
    vendor = enrichment_frame(accounts, contacts)
    assert vendor.columns == ["email", "department", "mobile_phone"]
    assert vendor["email"].str.to_lowercase().n_unique() == vendor.height
    unknown = vendor.filter(pl.col("email").str.ends_with("@" + UNKNOWN_EMAIL_DOMAIN))
    known = vendor.filter(~pl.col("email").str.ends_with("@" + UNKNOWN_EMAIL_DOMAIN))
    assert 0.01 < unknown.height / vendor.height < 0.03
    # Every known address is a contact's that reaches Salesforce (which holds it in lower
    # case), written as generated, in upper case or in lower case.
    in_salesforce = set(contacts_in_salesforce(accounts, contacts)["email"].str.to_lowercase())
    assert set(known["email"].str.to_lowercase()) <= in_salesforce
    assert known.height == len(in_salesforce) // 10
    emails = known["email"].to_list()
    assert any(e == e.upper() for e in emails) and any(e == e.lower() for e in emails)
    assert any(e not in (e.upper(), e.lower()) for e in emails)
    assert vendor.null_count().row(0) == (0, 0, 0)
    assert enrichment_frame(accounts, contacts).equals(vendor)


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
    # The generator knows which contacts reach Salesforce (the enrichment file relies on it).
    acc_raw, con_raw = account_frame(300, seed=7), contact_frame(300, seed=11)
    assert contacts_in_salesforce(acc_raw, con_raw).height == contacts.created
    # Update Only by Email: every vendor row of a known contact updates it, whatever the
    # letter case; the unknown people match no Contact and are rejected, never created.
    vendor = enrichment_frame(acc_raw, con_raw, seed=13)
    n_unknown = int(vendor["email"].str.ends_with("@" + UNKNOWN_EMAIL_DOMAIN).sum())
    enrichment = result.first[ENRICHMENT]
    assert (enrichment.partitions, enrichment.read) == (1, vendor.height)
    assert (enrichment.created, enrichment.invalid) == (0, 0)
    assert (enrichment.updated, enrichment.rejected) == (vendor.height - n_unknown, n_unknown)
    assert enrichment.errors == {NO_MATCH: n_unknown} and n_unknown >= 1
    assert enrichment.check_passed
    # second run: nothing new is sent, every confirmed record is unchanged
    again_acc, again_con = (
        result.second["salesforce_accounts"],
        result.second["salesforce_contacts"],
    )
    assert (again_acc.created, again_acc.updated, again_acc.unchanged) == (0, 0, accounts.created)
    assert (again_con.created, again_con.updated, again_con.unchanged) == (0, 0, contacts.created)
    assert again_acc.api_calls < accounts.api_calls
    again_enr = result.second[ENRICHMENT]
    assert (again_enr.updated, again_enr.unchanged) == (0, enrichment.updated)
    assert again_enr.rejected == n_unknown  # looked up again, still no Contact
    # The first run maps every row; the second only the invalid and refused ones (the rest
    # matched their stored source hash).
    assert (accounts.compared, contacts.compared) == (accounts.read, contacts.read)
    assert again_acc.compared == accounts.invalid + accounts.rejected
    assert again_con.compared == contacts.invalid + contacts.rejected
    text = out.getvalue()
    assert "salesforce_accounts" in text and "unchanged" in text
    assert f"({n_unknown} of people no contact has)" in text
    assert f"{ENRICHMENT}[__all__]: read {vendor.height}, created 0, updated " in text
    assert f"  {ENRICHMENT}: {NO_MATCH} x{n_unknown}" in text
    assert "dagster dev" in text or "--serve" in text
    assert (tmp_path / "demo" / "demo.env").stat().st_mode & 0o077 == 0


def test_demo_is_a_cli_subcommand(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["demo", "--help"])
    assert "--rows" in capsys.readouterr().out
