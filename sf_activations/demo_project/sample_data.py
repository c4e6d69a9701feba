"""Sample accounts and contacts for the demo, about 2% of them with values Salesforce refuses.

Deterministic for a given seed, so two demo runs see the same data. The bad rows are there to
show how each kind of problem surfaces:

- an account name over 255 characters: the engine marks it invalid before sending (STRING_TOO_LONG);
- an account tier outside the restricted picklist Tier__c: the engine knows the picklist from
  describe() and marks it invalid too (INVALID_PICKLIST_VALUE);
- an account in the country "Atlantis": the demo org's Apex trigger refuses it, so only
  Salesforce rejects it (CANNOT_INSERT_UPDATE_ACTIVATE_ENTITY);
- a contact whose account does not exist: Salesforce rejects the lookup (INVALID_FIELD);
- a contact without a last name: a required field missing (REQUIRED_FIELD_MISSING).

A third table, ``raw_contact_enrichment``, is a data vendor's file keyed by email address only
(no Salesforce Id, no external id): a department and a mobile phone for some of the contacts
that reach Salesforce, the address written in the vendor's own letter case, plus a few addresses
of people no contact has (an Update Only sync finds no record for them: NO_MATCHING_RECORD).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import polars as pl

from sf_activations.warehouse.duckdb import DuckDBWarehouse

INDUSTRIES = ("Technology", "Finance", "Healthcare", "Retail", "Manufacturing", "Education")
TIERS = ("Gold", "Silver", "Bronze")
CITIES = (
    ("Berlin", "Germany"),
    ("Lyon", "France"),
    ("Austin", "United States"),
    ("Osaka", "Japan"),
    ("Porto", "Portugal"),
    ("Toronto", "Canada"),
)
FIRST = ("Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Frances", "Ken", "Radia", "Tim")
LAST = (
    "Lovelace",
    "Hopper",
    "Turing",
    "Dijkstra",
    "Liskov",
    "Knuth",
    "Allen",
    "Thompson",
    "Perlman",
    "Lee",
)
TITLES = ("CEO", "CTO", "VP Sales", "Engineer", "Analyst", None)
DEPARTMENTS = ("Engineering", "Sales", "Finance", "Marketing", "Operations", "Support")

# One bad row every N rows, per kind of problem (each about 1%).
_LONG_NAME_EVERY = 151
_BAD_TIER_EVERY = 149
_ATLANTIS_EVERY = 97
ATLANTIS = "Atlantis"
_MISSING_ACCOUNT_EVERY = 103
_NO_LAST_NAME_EVERY = 89
_DELETED_EVERY = 211
# The vendor knows every N-th contact that Salesforce holds, and one unknown person per M rows.
_ENRICHED_EVERY = 10
_UNKNOWN_EVERY = 50
UNKNOWN_EMAIL_DOMAIN = "new-hires.example.org"


@dataclass(frozen=True, slots=True)
class SampleData:
    """What the generator wrote."""

    accounts: int
    contacts: int
    bad_accounts: int  # rows Salesforce or the engine will refuse
    bad_contacts: int
    enrichment: int  # rows of the vendor's file
    unknown_emails: int  # of which no contact has the address


def account_frame(n: int, *, seed: int = 7) -> pl.DataFrame:
    """``n`` raw accounts (a few soft-deleted, about 2% with refused values)."""
    rng = random.Random(seed)
    base = datetime(2026, 1, 1, tzinfo=UTC)
    rows = []
    for i in range(1, n + 1):
        city, country = rng.choice(CITIES)
        name = (
            f"{rng.choice(LAST)} {rng.choice(('Labs', 'Systems', 'GmbH', 'Inc', 'Partners'))} {i}"
        )
        tier: str | None = rng.choice(TIERS)
        if i % _LONG_NAME_EVERY == 0:
            name = "Very Long Holdings " + "x" * 300
        if i % _BAD_TIER_EVERY == 0:
            tier = "Platinum"
        if i % _ATLANTIS_EVERY == 0:
            country = ATLANTIS
        rows.append(
            {
                "account_id": f"ACC-{i:06d}",
                "name": name,
                "industry": rng.choice(INDUSTRIES),
                "tier": tier,
                "annual_revenue": round(rng.uniform(1e5, 5e8), 2),
                "employees": rng.randint(2, 50_000),
                "website": f"https://www.example{i}.com",
                "billing_city": city,
                "billing_country": country,
                "is_deleted": i % _DELETED_EVERY == 0,
                "updated_at": base + timedelta(minutes=rng.randint(0, 60 * 24 * 300)),
            }
        )
    return pl.DataFrame(rows)


def contact_frame(n_accounts: int, *, per_account: int = 2, seed: int = 11) -> pl.DataFrame:
    """About ``per_account`` contacts per live account (about 2% with refused values)."""
    rng = random.Random(seed)
    base = datetime(2026, 1, 1, tzinfo=UTC)
    live = [i for i in range(1, n_accounts + 1) if i % _DELETED_EVERY != 0]
    rows = []
    for i in range(1, len(live) * per_account + 1):
        account = f"ACC-{live[(i - 1) // per_account]:06d}"
        first, last = rng.choice(FIRST), rng.choice(LAST)
        last_name: str | None = last
        if i % _MISSING_ACCOUNT_EVERY == 0:
            account = f"ACC-MISSING-{i:06d}"
        if i % _NO_LAST_NAME_EVERY == 0:
            last_name = None
        rows.append(
            {
                "contact_id": f"CON-{i:07d}",
                "first_name": first,
                "last_name": last_name,
                "email": f"{first}.{last}.{i}@Example.com",
                "title": rng.choice(TITLES),
                "phone": f"+1-555-{rng.randint(0, 9999):04d}",
                "account_id": account,
                "updated_at": base + timedelta(minutes=rng.randint(0, 60 * 24 * 300)),
            }
        )
    return pl.DataFrame(rows)


def contacts_in_salesforce(accounts: pl.DataFrame, contacts: pl.DataFrame) -> pl.DataFrame:
    """The contacts the demo's syncs get into Salesforce: the others have a bad value or an
    account that never got there (deleted, too long a name, a bad tier, billed in Atlantis)."""
    good_accounts = accounts.filter(
        ~pl.col("is_deleted")
        & (pl.col("name").str.strip_chars().str.len_chars() <= 255)
        & pl.col("tier").is_in(TIERS)
        & (pl.col("billing_country") != ATLANTIS)
    ).get_column("account_id")
    return contacts.filter(
        pl.col("account_id").is_in(good_accounts.implode()) & pl.col("last_name").is_not_null()
    )


def enrichment_frame(
    accounts: pl.DataFrame, contacts: pl.DataFrame, *, seed: int = 13
) -> pl.DataFrame:
    """A vendor's enrichment file: ``email``, ``department``, ``mobile_phone``.

    Every ``_ENRICHED_EVERY``-th contact in Salesforce, its address in one of three letter
    cases (as generated, e.g. ``Ada.Lovelace.8@Example.com``; upper case; lower case, as the
    contacts sync stored it), and every ``_UNKNOWN_EVERY``-th row an address no contact has.
    """
    rng = random.Random(seed)
    known = contacts_in_salesforce(accounts, contacts).get_column("email").to_list()
    rows = []
    for j, email in enumerate(known[_ENRICHED_EVERY - 1 :: _ENRICHED_EVERY]):
        if j % _UNKNOWN_EVERY == 0:
            first, last = rng.choice(FIRST), rng.choice(LAST)
            rows.append(
                {
                    "email": f"{first}.{last}.{j}@{UNKNOWN_EMAIL_DOMAIN}",
                    "department": rng.choice(DEPARTMENTS),
                    "mobile_phone": f"+1-555-{rng.randint(0, 9999):04d}",
                }
            )
        cased = (email, email.upper(), email.lower())[j % 3]
        rows.append(
            {
                "email": cased,
                "department": rng.choice(DEPARTMENTS),
                "mobile_phone": f"+1-555-{rng.randint(0, 9999):04d}",
            }
        )
    return pl.DataFrame(
        rows, schema={"email": pl.String, "department": pl.String, "mobile_phone": pl.String}
    )


def write_sample_data(
    warehouse: DuckDBWarehouse, *, accounts: int = 2000, seed: int = 7
) -> SampleData:
    """Write ``raw_accounts``, ``raw_contacts`` and ``raw_contact_enrichment`` (replacing them)."""
    acc = account_frame(accounts, seed=seed)
    con = contact_frame(accounts, seed=seed + 4)
    enrich = enrichment_frame(acc, con, seed=seed + 6)
    warehouse.replace_table("raw_accounts", acc)
    warehouse.replace_table("raw_contacts", con)
    warehouse.replace_table("raw_contact_enrichment", enrich)
    live = acc.filter(~pl.col("is_deleted"))
    bad_acc = live.filter(
        (pl.col("name").str.len_chars() > 255) | (pl.col("tier") == "Platinum")
    ).height
    bad_con = con.filter(
        pl.col("account_id").str.starts_with("ACC-MISSING") | pl.col("last_name").is_null()
    ).height
    return SampleData(
        accounts=live.height,
        contacts=con.height,
        bad_accounts=bad_acc,
        bad_contacts=bad_con,
        enrichment=enrich.height,
        unknown_emails=int(enrich["email"].str.ends_with("@" + UNKNOWN_EMAIL_DOMAIN).sum()),
    )
