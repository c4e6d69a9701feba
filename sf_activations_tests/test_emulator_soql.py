"""The emulator's SOQL engine: each feature and each Salesforce error, with exact messages."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import polars as pl
import pytest

from sf_activations.emulator.errors import SalesforceError
from sf_activations.emulator.org import Org
from sf_activations.emulator.schema import (
    FieldDef,
    ObjectDef,
    Schema,
    default_schema,
    system_fields,
)
from sf_activations.emulator.soql import execute_soql, parse_soql

NOW = datetime(2024, 9, 10, 13, 57, 45, tzinfo=UTC)


# ---------------------------------------------------------------------------------------------
# A real Org on the default schema plus a few test fields, seeded through its DML.
# ---------------------------------------------------------------------------------------------


def _schema() -> Schema:
    """The default org plus the few fields these tests need beyond it."""
    schema = default_schema()
    schema.add_field(
        "Account", FieldDef(name="Secret__c", label="Secret", type="string", length=80, custom=True)
    )
    schema.add_field(
        "Contact",
        FieldDef(
            name="Interests__c",
            label="Interests",
            type="multipicklist",
            picklist_values=("Golf", "Chess", "Sailing"),
            custom=True,
        ),
    )
    schema.add_field(
        "Contact",
        FieldDef(
            name="Code__c",
            label="Code",
            type="string",
            length=20,
            external_id=True,
            unique=True,
            case_sensitive=True,
            custom=True,
        ),
    )
    schema.add_object(
        ObjectDef("Hidden__c", "Hidden", "Hidden", "a0H", True, system_fields(), queryable=False)
    )
    return schema


def _new_org() -> Org:
    return Org(_schema(), clock=lambda: NOW)


@pytest.fixture(scope="module")
def org() -> Org:
    """One seeded org shared by the read-only tests (tests that change it build their own)."""
    return _seeded_org()


def _seeded_org() -> Org:
    org = _new_org()
    acme = org.create(
        "Account",
        {
            "Name": "Acme",
            "External_Id__c": "ACME-1",
            "NumberOfEmployees": 50,
            "AnnualRevenue": 1000.0,
            "Industry": "Energy",
            "Secret__c": "s1",
        },
    )
    org.create(
        "Account",
        {
            "Name": "beta corp",
            "External_Id__c": "BETA-2",
            "NumberOfEmployees": 5,
            "AnnualRevenue": 250.0,
            "ParentId": acme,
        },
    )
    org.create("Account", {"Name": "100% Gamma_Co", "External_Id__c": "gamma-3"})
    gone = org.create("Account", {"Name": "Deleted Inc", "External_Id__c": "DEL-4"})
    org.delete("Account", gone)
    ann = org.create(
        "Contact",
        {
            "LastName": "O'Brien",
            "Email": "ann@acme.example",
            "Birthdate": "1990-05-17",
            "HasOptedOutOfEmail": True,
            "Interests__c": "Golf;Chess",
            "Code__c": "AbC",
            "AccountId": acme,
        },
    )
    org.create(
        "Contact",
        {
            "LastName": "Smith",
            "Email": "bob@example.com",
            "Birthdate": "2024-09-10",
            "HasOptedOutOfEmail": False,
            "Interests__c": "Chess",
            "Code__c": "abc",
        },
    )
    lead = org.create("Lead", {"LastName": "Lee", "Company": "LeadCo"})
    email = org.create("EmailMessage", {"Subject": "Hello"})
    org.create(
        "EmailMessageRelation",
        {"EmailMessageId": email, "RelationId": ann, "RelationType": "ToAddress"},
    )
    org.create(
        "EmailMessageRelation",
        {"EmailMessageId": email, "RelationId": lead, "RelationType": "CcAddress"},
    )
    return org


def q(org: Org, soql: str, **kw: Any) -> list[dict[str, Any]]:
    return execute_soql(org, soql, now=NOW, **kw).records


def names(records: list[dict[str, Any]], field: str = "Name") -> list[Any]:
    return [r[field] for r in records]


def error(org: Org, soql: str, **kw: Any) -> SalesforceError:
    with pytest.raises(SalesforceError) as info:
        execute_soql(org, soql, now=NOW, **kw)
    assert info.value.status == 400
    return info.value


# ---------------------------------------------------------------------------------------------
# SELECT and record shape
# ---------------------------------------------------------------------------------------------


def test_record_shape_uses_describe_case_and_explicit_nulls(org: Org) -> None:
    result = execute_soql(org, "select id, name, INDUSTRY from account order by name", now=NOW)
    assert result.total_size == 3
    gamma = result.records[0]
    assert list(gamma) == ["attributes", "Id", "Name", "Industry"]
    assert gamma["attributes"] == {
        "type": "Account",
        "url": f"/services/data/v59.0/sobjects/Account/{gamma['Id']}",
    }
    assert gamma["Name"] == "100% Gamma_Co"
    assert gamma["Industry"] is None


def test_api_version_goes_into_the_attribute_url(org: Org) -> None:
    [rec] = q(org, "SELECT Name FROM Account WHERE Name = 'Acme'", api_version="60.0")
    assert rec["attributes"]["url"].startswith("/services/data/v60.0/sobjects/Account/001")
    assert "Id" not in rec  # not selected, only in the url


def test_values_keep_their_json_types(org: Org) -> None:
    [rec] = q(
        org,
        "SELECT NumberOfEmployees, AnnualRevenue, CreatedDate, IsDeleted FROM Account "
        "WHERE External_Id__c = 'ACME-1'",
    )
    assert rec["NumberOfEmployees"] == 50
    assert rec["AnnualRevenue"] == 1000.0
    assert rec["CreatedDate"] == "2024-09-10T13:57:45.000+0000"
    assert rec["IsDeleted"] is False


def test_parent_relationship_fields_nest_and_null_parent_is_null(org: Org) -> None:
    records = q(
        org,
        "SELECT LastName, Account.Name, Account.Owner.Username, Account.Industry "
        "FROM Contact ORDER BY LastName",
    )
    obrien, smith = records
    assert list(obrien) == ["attributes", "LastName", "Account"]
    account = obrien["Account"]
    assert account["attributes"]["type"] == "Account"
    assert account["attributes"]["url"].startswith("/services/data/v59.0/sobjects/Account/001")
    assert list(account) == ["attributes", "Name", "Owner", "Industry"]
    assert account["Name"] == "Acme"
    assert account["Industry"] == "Energy"
    assert account["Owner"]["Username"] == "admin@emulator.example"
    assert account["Owner"]["attributes"]["type"] == "User"
    assert smith["Account"] is None


def test_self_relationship_and_missing_grandparent(org: Org) -> None:
    records = q(org, "SELECT Name, Parent.Name, Parent.Parent.Name FROM Account ORDER BY Name")
    by_name = {r["Name"]: r for r in records}
    assert by_name["beta corp"]["Parent"]["Name"] == "Acme"
    assert by_name["beta corp"]["Parent"]["Parent"] is None
    assert by_name["Acme"]["Parent"] is None


def test_polymorphic_relationship_follows_the_id_type(org: Org) -> None:
    records = q(
        org,
        "SELECT RelationType, Relation.LastName FROM EmailMessageRelation ORDER BY RelationType",
    )
    assert [
        (r["RelationType"], r["Relation"]["attributes"]["type"], r["Relation"]["LastName"])
        for r in records
    ] == [("CcAddress", "Lead", "Lee"), ("ToAddress", "Contact", "O'Brien")]


def test_object_name_and_alias_prefixes(org: Org) -> None:
    assert names(q(org, "SELECT Account.Name FROM Account WHERE Account.Name = 'Acme'")) == ["Acme"]
    assert names(q(org, "SELECT a.Name FROM Account a WHERE a.Name LIKE 'acme'")) == ["Acme"]


def test_where_on_parent_field(org: Org) -> None:
    records = q(org, "SELECT LastName FROM Contact WHERE Account.External_Id__c = 'ACME-1'")
    assert names(records, "LastName") == ["O'Brien"]
    records = q(org, "SELECT LastName FROM Contact WHERE Account.Name = null")
    assert names(records, "LastName") == ["Smith"]


# ---------------------------------------------------------------------------------------------
# COUNT
# ---------------------------------------------------------------------------------------------


def test_count_returns_total_size_and_no_records(org: Org) -> None:
    result = execute_soql(org, "SELECT COUNT() FROM Account", now=NOW)
    assert (result.total_size, result.records) == (3, [])
    result = execute_soql(org, "SELECT COUNT() FROM Account WHERE Name LIKE 'a%'", now=NOW)
    assert result.total_size == 1
    result = execute_soql(org, "SELECT count() FROM Account LIMIT 2", now=NOW)
    assert result.total_size == 2
    result = execute_soql(org, "SELECT COUNT() FROM Account", include_deleted=True, now=NOW)
    assert result.total_size == 4


def test_count_field_is_an_aggregate_result(org: Org) -> None:
    result = execute_soql(org, "SELECT COUNT(Id), COUNT(Industry) n FROM Account", now=NOW)
    assert result.total_size == 1
    assert result.records == [{"attributes": {"type": "AggregateResult"}, "expr0": 3, "n": 1}]


def test_count_mixed_with_plain_field_is_rejected(org: Org) -> None:
    err = error(org, "SELECT Name, COUNT(Id) FROM Account")
    assert err.code == "MALFORMED_QUERY"
    assert err.message.endswith(
        "ERROR at Row:1:Column:8\nField must be grouped or aggregated: Name"
    )
    err = error(org, "SELECT COUNT(), Name FROM Account")
    assert err.message.endswith("ERROR at Row:1:Column:15\nunexpected token: ','")


# ---------------------------------------------------------------------------------------------
# WHERE
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        ("Name = 'ACME'", ["Acme"]),  # text equality ignores case
        ("Name != 'acme'", ["100% Gamma_Co", "beta corp"]),
        ("Name <> 'acme'", ["100% Gamma_Co", "beta corp"]),
        ("NumberOfEmployees > 5", ["Acme"]),
        ("NumberOfEmployees >= 5", ["Acme", "beta corp"]),
        ("NumberOfEmployees < 50", ["beta corp"]),
        ("NumberOfEmployees <= 50.0", ["Acme", "beta corp"]),
        ("AnnualRevenue = 250", ["beta corp"]),
        ("Industry = null", ["100% Gamma_Co", "beta corp"]),
        ("Industry != null", ["Acme"]),
        ("Industry != 'Energy'", ["100% Gamma_Co", "beta corp"]),  # nulls are != a value
        ("Industry = ''", ["100% Gamma_Co", "beta corp"]),  # '' means null
        ("NumberOfEmployees < 100", ["Acme", "beta corp"]),  # null never orders
        ("Name IN ('acme', 'BETA CORP', 'nobody')", ["Acme", "beta corp"]),
        ("Name NOT IN ('acme')", ["100% Gamma_Co", "beta corp"]),
        ("Industry IN ('Energy', null)", ["100% Gamma_Co", "Acme", "beta corp"]),
        ("Industry NOT IN ('Energy')", ["100% Gamma_Co", "beta corp"]),
        ("Name LIKE 'a%'", ["Acme"]),
        ("Name LIKE '%CORP'", ["beta corp"]),
        ("Name LIKE 'b_ta%'", ["beta corp"]),
        ("Name LIKE '100\\% Gamma\\_Co'", ["100% Gamma_Co"]),
        ("Name LIKE '100\\%%'", ["100% Gamma_Co"]),
        ("Name LIKE 'Gamma'", []),  # LIKE matches the whole value
        ("Name = 'Acme' OR Name = 'beta corp' OR Name = 'x'", ["Acme", "beta corp"]),
        ("Name LIKE '%a%' AND NumberOfEmployees > 1", ["Acme", "beta corp"]),
        ("(Name = 'Acme' OR Name = 'beta corp') AND NumberOfEmployees < 10", ["beta corp"]),
        ("NOT Name = 'Acme'", ["100% Gamma_Co", "beta corp"]),
        ("NOT (Name = 'Acme' OR NumberOfEmployees = 5)", ["100% Gamma_Co"]),
        ("Name = 'Acme' AND NOT (Industry = null)", ["Acme"]),
        ("OwnerId != null AND ParentId = null", ["100% Gamma_Co", "Acme"]),
        ("IsDeleted = false", ["100% Gamma_Co", "Acme", "beta corp"]),
        # Every record was created at NOW, 2024-09-10T13:57:45Z.
        ("CreatedDate = 2024-09-10T13:57:45Z", ["100% Gamma_Co", "Acme", "beta corp"]),
        ("CreatedDate > 2024-09-10T13:57:45Z", []),
        ("CreatedDate < 2024-09-10T15:57:45+02:00", []),  # the same instant
        ("CreatedDate <= 2024-09-10T15:57:45.000+02:00", ["100% Gamma_Co", "Acme", "beta corp"]),
        ("CreatedDate >= 2024-09-10T09:57:45-04:00", ["100% Gamma_Co", "Acme", "beta corp"]),
        ("CreatedDate > 2024-09-10T09:57:46-04:00", []),
    ],
)
def test_where_operators(org: Org, where: str, expected: list[str]) -> None:
    assert names(q(org, f"SELECT Name FROM Account WHERE {where} ORDER BY Name")) == expected


def test_id_filters_accept_15_and_18_character_ids(org: Org) -> None:
    acme = q(org, "SELECT Id FROM Account WHERE Name = 'Acme'")[0]["Id"]
    for literal in (acme, acme[:15], acme[:15] + acme[15:].lower()):
        records = q(org, f"SELECT Name FROM Account WHERE Id = '{literal}'")
        assert names(records) == ["Acme"], literal
    assert names(
        q(org, f"SELECT LastName FROM Contact WHERE AccountId IN ('{acme[:15]}')"), "LastName"
    ) == ["O'Brien"]
    # Ids are case-sensitive in their 15-character form.
    assert acme[:15].swapcase() != acme[:15]
    assert q(org, f"SELECT Name FROM Account WHERE Id = '{acme[:15].swapcase()}'") == []


def test_case_sensitive_unique_field_compares_exactly(org: Org) -> None:
    assert names(q(org, "SELECT LastName FROM Contact WHERE Code__c = 'abc'"), "LastName") == [
        "Smith"
    ]
    assert names(q(org, "SELECT LastName FROM Contact WHERE Code__c IN ('AbC')"), "LastName") == [
        "O'Brien"
    ]
    # ...while an ordinary external id ignores case.
    assert names(q(org, "SELECT Name FROM Account WHERE External_Id__c = 'GAMMA-3'")) == [
        "100% Gamma_Co"
    ]


def test_string_escapes(org: Org) -> None:
    assert names(
        q(org, "SELECT LastName FROM Contact WHERE LastName = 'o\\'brien'"), "LastName"
    ) == ["O'Brien"]
    query = parse_soql("SELECT Id FROM Account WHERE Name = 'a\\nb\\tc\\\\d\\\"e\\u00e9'")
    assert query.where is not None
    assert query.where.value.value == 'a\nb\tc\\d"eé'  # type: ignore[union-attr]


def test_boolean_and_date_filters(org: Org) -> None:
    assert names(
        q(org, "SELECT LastName FROM Contact WHERE HasOptedOutOfEmail = TRUE"), "LastName"
    ) == ["O'Brien"]
    assert names(
        q(org, "SELECT LastName FROM Contact WHERE Birthdate < 2000-01-01"), "LastName"
    ) == ["O'Brien"]
    assert names(
        q(org, "SELECT LastName FROM Contact WHERE Birthdate = 1990-05-17"), "LastName"
    ) == ["O'Brien"]


@pytest.mark.parametrize(
    ("literal", "expected"),
    [
        ("TODAY", ["Smith"]),  # NOW is 2024-09-10
        ("YESTERDAY", []),
        ("THIS_MONTH", ["Smith"]),
        ("LAST_N_DAYS:3", ["Smith"]),
        ("THIS_YEAR", ["Smith"]),
        ("LAST_YEAR", []),
    ],
)
def test_date_literals_on_date_fields(org: Org, literal: str, expected: list[str]) -> None:
    records = q(org, f"SELECT LastName FROM Contact WHERE Birthdate = {literal}")
    assert names(records, "LastName") == expected


def test_date_literals_on_datetime_fields(org: Org) -> None:
    # Records were created at NOW, a Tuesday afternoon (UTC).
    def count(where: str) -> int:
        return len(q(org, f"SELECT Name FROM Account WHERE CreatedDate {where}"))

    assert count("= TODAY") == 3
    assert count("= LAST_N_DAYS:1") == 3  # includes today
    assert count("= YESTERDAY") == 0
    assert count("< TODAY") == 0
    assert count(">= TODAY") == 3
    assert count("> TODAY") == 0
    assert count("<= TODAY") == 3
    assert count("< TOMORROW") == 3
    assert count("!= TODAY") == 0
    assert count("= THIS_WEEK") == 3
    assert count("= LAST_WEEK") == 0
    assert count("= NEXT_N_DAYS:3") == 0
    assert count("= N_DAYS_AGO:0") == 3


def test_date_literals_follow_the_org_clock_by_default(org: Org) -> None:
    # The org's clock says 2024-09-10, the day these records were created.
    result = execute_soql(org, "SELECT Id FROM Account WHERE CreatedDate = TODAY")
    assert result.total_size == 3
    later = datetime(2024, 9, 12, tzinfo=UTC)
    assert (
        execute_soql(org, "SELECT Id FROM Account WHERE CreatedDate = TODAY", now=later).total_size
        == 0
    )


def test_multipicklist_includes_excludes_and_equals(org: Org) -> None:
    def last_names(where: str) -> list[str]:
        return names(
            q(org, f"SELECT LastName FROM Contact WHERE {where} ORDER BY LastName"), "LastName"
        )

    assert last_names("Interests__c INCLUDES ('golf')") == ["O'Brien"]
    assert last_names("Interests__c INCLUDES ('Golf', 'Chess')") == ["O'Brien", "Smith"]
    assert last_names("Interests__c INCLUDES ('Golf;Chess')") == ["O'Brien"]
    assert last_names("Interests__c EXCLUDES ('Golf')") == ["Smith"]
    assert last_names("Interests__c = 'chess;golf'") == ["O'Brien"]


def test_semi_join_and_anti_join(org: Org) -> None:
    records = q(
        org,
        "SELECT Name FROM Account WHERE Id IN (SELECT AccountId FROM Contact WHERE Email LIKE '%acme%')",
    )
    assert names(records) == ["Acme"]
    records = q(
        org,
        "SELECT Name FROM Account WHERE Id NOT IN (SELECT AccountId FROM Contact) ORDER BY Name",
    )
    assert names(records) == ["100% Gamma_Co", "beta corp"]
    records = q(org, "SELECT LastName FROM Contact WHERE AccountId IN (SELECT Id FROM Account)")
    assert names(records, "LastName") == ["O'Brien"]


def test_semi_join_errors(org: Org) -> None:
    err = error(org, "SELECT Id FROM Account WHERE Name IN (SELECT LastName FROM Contact)")
    assert err.code == "MALFORMED_QUERY"
    assert "ERROR at Row:1:Column:30\nInvalid field for semi join: Name." in err.message
    err = error(
        org,
        "SELECT Id FROM Account WHERE Id IN (SELECT AccountId FROM Contact "
        "WHERE AccountId IN (SELECT Id FROM Account))",
    )
    assert err.message.endswith(
        "ERROR at Row:1:Column:87\nNesting of semi join sub-selects is not supported"
    )
    err = error(org, "SELECT Id FROM Account WHERE Id IN (SELECT Nope FROM Contact)")
    assert (err.code, "No such column 'Nope' on entity 'Contact'" in err.message) == (
        "INVALID_FIELD",
        True,
    )


def test_deleted_rows_only_with_include_deleted(org: Org) -> None:
    assert q(org, "SELECT Name FROM Account WHERE External_Id__c = 'DEL-4'") == []
    records = q(
        org, "SELECT Name, IsDeleted FROM Account WHERE IsDeleted = true", include_deleted=True
    )
    assert [(r["Name"], r["IsDeleted"]) for r in records] == [("Deleted Inc", True)]


# ---------------------------------------------------------------------------------------------
# ORDER BY, LIMIT, OFFSET, FOR
# ---------------------------------------------------------------------------------------------


def test_order_by_directions_and_nulls(org: Org) -> None:
    def order(clause: str) -> list[str]:
        return names(q(org, f"SELECT Name FROM Account ORDER BY {clause}"))

    assert order("NumberOfEmployees") == ["100% Gamma_Co", "beta corp", "Acme"]  # ASC: nulls first
    assert order("NumberOfEmployees DESC") == ["Acme", "beta corp", "100% Gamma_Co"]  # DESC: last
    assert order("NumberOfEmployees ASC NULLS LAST") == ["beta corp", "Acme", "100% Gamma_Co"]
    assert order("NumberOfEmployees DESC NULLS FIRST") == ["100% Gamma_Co", "Acme", "beta corp"]
    assert order("Name DESC") == ["beta corp", "Acme", "100% Gamma_Co"]  # case-insensitive
    assert order("OwnerId ASC NULLS LAST, Name DESC") == ["beta corp", "Acme", "100% Gamma_Co"]
    assert order("Parent.Name DESC NULLS LAST, Name") == ["beta corp", "100% Gamma_Co", "Acme"]


def test_limit_and_offset(org: Org) -> None:
    assert names(q(org, "SELECT Name FROM Account ORDER BY Name LIMIT 2")) == [
        "100% Gamma_Co",
        "Acme",
    ]
    assert names(q(org, "SELECT Name FROM Account ORDER BY Name LIMIT 1 OFFSET 1")) == ["Acme"]
    assert names(q(org, "SELECT Name FROM Account ORDER BY Name OFFSET 2")) == ["beta corp"]
    assert q(org, "SELECT Name FROM Account LIMIT 0") == []


def test_with_security_enforced_is_accepted(org: Org) -> None:
    records = q(org, "SELECT Name FROM Account WHERE Name = 'Acme' WITH SECURITY_ENFORCED LIMIT 1")
    assert names(records) == ["Acme"]
    err = error(org, "SELECT Name FROM Account WITH DATA CATEGORY Geography__c AT usa__c")
    assert err.message.endswith("unexpected token: 'DATA'")


def test_for_view_is_accepted_and_for_update_rejected(org: Org) -> None:
    assert len(q(org, "SELECT Name FROM Account FOR VIEW")) == 3
    err = error(org, "SELECT Name FROM Account FOR UPDATE")
    assert err.code == "MALFORMED_QUERY"
    assert "ERROR at Row:1:Column:26\nFOR UPDATE is not allowed in this context" in err.message
    err = error(org, "SELECT Name FROM Account ALL ROWS")
    assert err.code == "MALFORMED_QUERY"
    assert "ERROR at Row:1:Column:26\nALL ROWS is not allowed in this context" in err.message
    assert "queryAll" in err.message


def test_offset_above_2000_is_out_of_range(org: Org) -> None:
    err = error(org, "SELECT Name FROM Account OFFSET 2001")
    assert err.code == "NUMBER_OUTSIDE_VALID_RANGE"
    assert err.message == (
        "\nSELECT Name FROM Account OFFSET 2001\n                                ^\n"
        "ERROR at Row:1:Column:33\nMaximum SOQL offset allowed is 2000"
    )


# ---------------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------------

_FIELD_HINT = (
    "If you are attempting to use a custom field, be sure to append the '__c' after the custom "
    "field name. Please reference your WSDL or the describe call for the appropriate names."
)


def test_unknown_field_is_invalid_field_with_the_real_message(org: Org) -> None:
    # Mirrors a message captured from a real org (Bacon__c on Account).
    err = error(org, "SELECT Bacon__c FROM Account LIMIT 2")
    assert err.code == "INVALID_FIELD"
    assert err.message == (
        "\nSELECT Bacon__c FROM Account LIMIT 2\n       ^\nERROR at Row:1:Column:8\n"
        f"No such column 'Bacon__c' on entity 'Account'. {_FIELD_HINT}"
    )


def test_unknown_field_in_where_order_and_parent(org: Org) -> None:
    err = error(org, "SELECT Id FROM Account WHERE Nmae = 'x'")
    assert err.code == "INVALID_FIELD"
    assert "ERROR at Row:1:Column:30\nNo such column 'Nmae' on entity 'Account'." in err.message
    err = error(org, "SELECT Id FROM Account ORDER BY Nmae")
    assert "ERROR at Row:1:Column:33\nNo such column 'Nmae' on entity 'Account'." in err.message
    err = error(org, "SELECT Account.Nmae FROM Contact")
    assert "ERROR at Row:1:Column:8\nNo such column 'Nmae' on entity 'Account'." in err.message


def test_unknown_relationship(org: Org) -> None:
    err = error(org, "SELECT Acount.Name FROM Contact")
    assert err.code == "INVALID_FIELD"
    assert err.message.endswith(
        "ERROR at Row:1:Column:8\nDidn't understand relationship 'Acount' in field path. "
        "If you are attempting to use a custom relationship, be sure to append the '__r' after "
        "the custom relationship name. Please reference your WSDL or the describe call for the "
        "appropriate names."
    )
    # A reference field's API name is not its relationship name.
    err = error(org, "SELECT AccountId.Name FROM Contact")
    assert "Didn't understand relationship 'AccountId'" in err.message


def test_field_hidden_by_field_level_security_is_unknown() -> None:
    org = _seeded_org()
    assert q(org, "SELECT Secret__c FROM Account WHERE Name = 'Acme'")[0]["Secret__c"] == "s1"
    org.permissions.set_field("Account", "Secret__c", "none")
    err = error(org, "SELECT Secret__c FROM Account")
    assert err.code == "INVALID_FIELD"
    assert "No such column 'Secret__c' on entity 'Account'" in err.message
    org.permissions.set_field("Account", "OwnerId", "none")
    err = error(org, "SELECT Owner.Username FROM Account")
    assert "Didn't understand relationship 'Owner'" in err.message


def test_unknown_object_matches_the_real_capture(org: Org) -> None:
    # amp-labs/connectors providers/salesforce/test/unknown-object.json, captured from a real org.
    err = error(org, "SELECT Id,Name,BillingCity,IsDeleted FROM Accout")
    assert err.code == "INVALID_TYPE"
    assert err.message == (
        "\nName,BillingCity,IsDeleted FROM Accout\n                                ^\n"
        "ERROR at Row:1:Column:43\nsObject type 'Accout' is not supported. If you are "
        "attempting to use a custom object, be sure to append the '__c' after the entity name. "
        "Please reference your WSDL or the describe call for the appropriate names."
    )


def test_unqueryable_or_unreadable_object_is_not_supported() -> None:
    org = _seeded_org()
    err = error(org, "SELECT Id FROM Hidden__c")
    assert (err.code, "sObject type 'Hidden__c' is not supported." in err.message) == (
        "INVALID_TYPE",
        True,
    )
    org.permissions.set_object("Lead", read=False)
    assert error(org, "SELECT Id FROM Lead").code == "INVALID_TYPE"


@pytest.mark.parametrize(
    ("soql", "tail"),
    [
        ("SELECT Id FROM Account WHERE", "ERROR at Row:1:Column:29\nunexpected token: <EOF>"),
        ("SELECT FROM Account", "ERROR at Row:1:Column:13\nunexpected token: 'Account'"),
        ("SELECT Id, FROM Account", "ERROR at Row:1:Column:17\nunexpected token: 'Account'"),
        ("SELECT * FROM Account", "ERROR at Row:1:Column:8\nunexpected token: '*'"),
        ("SELECT Id Account", "ERROR at Row:1:Column:11\nunexpected token: 'Account'"),
        ("SELECT Id FROM Account LIMIT x", "ERROR at Row:1:Column:30\nunexpected token: 'x'"),
        (
            "SELECT Id FROM Account LIMIT 5 ORDER BY Name",
            "ERROR at Row:1:Column:32\nunexpected token: 'ORDER'",
        ),
        (
            "SELECT Id FROM Account WHERE Name = 'a' AND Name = 'b' OR Name = 'c'",
            "ERROR at Row:1:Column:56\nunexpected token: 'OR'",
        ),
        (
            "SELECT Id FROM Account WHERE (Name = 'a'",
            "ERROR at Row:1:Column:41\nunexpected token: <EOF>",
        ),
        (
            "SELECT Id FROM Account WHERE Name = 'a' )",
            "ERROR at Row:1:Column:41\nunexpected token: ')'",
        ),
        (
            "SELECT Id FROM Account WHERE AnnualRevenue > 1e2",
            "ERROR at Row:1:Column:46\nunexpected token: '1e2'",
        ),
        (
            "SELECT Id FROM Account WHERE Name = :name",
            "ERROR at Row:1:Column:37\nBind variables only allowed in Apex code",
        ),
        (
            "SELECT Id FROM Account WHERE NumberOfEmployees > AnnualRevenue",
            "ERROR at Row:1:Column:50\nBind variables only allowed in Apex code",
        ),
        (
            "SELECT Id FROM Account GROUP BY Name",
            "ERROR at Row:1:Column:24\nunexpected token: 'GROUP'",
        ),
        (
            "SELECT Id, (SELECT Id FROM Contacts) FROM Account",
            "ERROR at Row:1:Column:12\nunexpected token: '('",
        ),
        (
            "SELECT toLabel(Industry) FROM Account",
            "ERROR at Row:1:Column:15\nunexpected token: '('",
        ),
        (
            "SELECT Id FROM Account WHERE Name = 'abc",
            "ERROR at Row:1:Column:40\nline 1:40 mismatched character '<EOF>' expecting '''",
        ),
        (
            "SELECT Id FROM Account WHERE Name = $x",
            "ERROR at Row:1:Column:36\nline 1:36 no viable alternative at character '$'",
        ),
        (
            "SELECT Id FROM Account WHERE Name = 'a\\qb'",
            "ERROR at Row:1:Column:37\nInvalid string literal 'a\\q'. Illegal character sequence '\\q' in string literal.",
        ),
        (
            "SELECT Id FROM Account WHERE Name = 'a' ORDER BY Name NULLS",
            "ERROR at Row:1:Column:60\nunexpected token: <EOF>",
        ),
    ],
)
def test_malformed_queries(org: Org, soql: str, tail: str) -> None:
    err = error(org, soql)
    assert err.code == "MALFORMED_QUERY"
    assert err.message.endswith(tail), err.message


def test_malformed_query_echo_and_caret(org: Org) -> None:
    err = error(org, "SELECT Id FROM Account WHERE Name = 'x' LIMT 5")
    assert err.message == (
        "\nId FROM Account WHERE Name = 'x' LIMT 5\n" + " " * 33 + "^\n"
        "ERROR at Row:1:Column:41\nunexpected token: 'LIMT'"
    )


def test_long_query_echo_is_cut_to_words_around_the_error(org: Org) -> None:
    # Shape of a real capture: the snippet starts and ends on word boundaries ~32 characters
    # either side of the error.
    soql = "SELECT Id, Name, NumberOfEmployees, AnnualRevenue, Industry, Bogus__c, OwnerId, ParentId FROM Account"
    err = error(org, soql)
    assert err.message.startswith(
        "\nNumberOfEmployees, AnnualRevenue, Industry, Bogus__c, OwnerId, ParentId FROM\n"
        + " " * 44
        + "^\nERROR at Row:1:Column:62\nNo such column 'Bogus__c'"
    )


def test_multi_line_query_reports_row_and_column(org: Org) -> None:
    err = error(org, "SELECT Id\nFROM Account\nWHERE Nmae = 'x'")
    assert err.message.startswith(
        "\nWHERE Nmae = 'x'\n      ^\nERROR at Row:3:Column:7\nNo such column"
    )


@pytest.mark.parametrize(
    ("where", "message"),
    [
        (
            "Name = 5",
            "value of filter criterion for field 'Name' must be of type string and should be enclosed in quotes",
        ),
        (
            "NumberOfEmployees = '5'",
            "value of filter criterion for field 'NumberOfEmployees' must be of type integer and should not be enclosed in quotes",
        ),
        (
            "AnnualRevenue > '5'",
            "value of filter criterion for field 'AnnualRevenue' must be of type double and should not be enclosed in quotes",
        ),
        (
            "IsDeleted = 'true'",
            "value of filter criterion for field 'IsDeleted' must be of type boolean and should not be enclosed in quotes",
        ),
        (
            "CreatedDate > 2024-01-01",
            "value of filter criterion for field 'CreatedDate' must be of type dateTime and should not be enclosed in quotes",
        ),
        ("Id = 'abc'", "invalid ID field: abc"),
        ("OwnerId IN ('005000000000001', 'nope')", "invalid ID field: nope"),
        ("IsDeleted > false", "invalid operator on boolean field: IsDeleted"),
        (
            "Industry INCLUDES ('a')",
            "INCLUDES/EXCLUDES operator only valid on multipicklist field: Industry",
        ),
    ],
)
def test_filter_type_errors(org: Org, where: str, message: str) -> None:
    err = error(org, f"SELECT Id FROM Account WHERE {where}")
    assert err.code == "INVALID_QUERY_FILTER_OPERATOR"
    assert err.message.endswith("\n" + message), err.message


def test_long_text_cannot_be_filtered_and_multipicklist_cannot_be_sorted(org: Org) -> None:
    err = error(org, "SELECT Id FROM Account WHERE Description = 'x'")
    assert err.code == "INVALID_FIELD"
    assert err.message.endswith(
        "ERROR at Row:1:Column:30\nfield 'Description' can not be filtered in a query call"
    )
    err = error(org, "SELECT Id FROM Contact ORDER BY interests__c")
    assert err.code == "INVALID_FIELD"
    assert err.message.endswith(
        "ERROR at Row:1:Column:33\nfield 'Interests__c' can not be sorted in a query call"
    )
    # Selecting them is fine.
    assert q(org, "SELECT Description FROM Account WHERE Name = 'Acme'")[0]["Description"] is None


def test_duplicate_field_is_rejected(org: Org) -> None:
    err = error(org, "SELECT Name, Id, name FROM Account")
    assert err.message.endswith("ERROR at Row:1:Column:18\nduplicate field selected: name")


def test_invalid_date_literal_is_malformed(org: Org) -> None:
    err = error(org, "SELECT Id FROM Contact WHERE Birthdate = 2024-02-30")
    assert err.code == "MALFORMED_QUERY"
    assert err.message.endswith(
        "ERROR at Row:1:Column:42\nvalue of date literal is invalid: 2024-02-30"
    )


# ---------------------------------------------------------------------------------------------
# Performance
# ---------------------------------------------------------------------------------------------


def test_in_filter_over_100k_records() -> None:
    org = _new_org()
    n = 100_000
    frame = pl.DataFrame(
        {
            "Name": [f"Account {i}" for i in range(n)],
            "External_Id__c": [f"EXT-{i}" for i in range(n)],
            "NumberOfEmployees": [str(i) for i in range(n)],
        }
    )
    outcome = org.bulk_apply("Account", "insert", frame)
    assert outcome.errors.count(None) == n
    wanted = [f"ext-{i}" for i in range(0, n, 500)]  # 200 values, in another case
    soql = "SELECT Id, External_Id__c FROM Account WHERE External_Id__c IN ({})".format(
        ", ".join(f"'{v}'" for v in wanted)
    )
    # Speed is measured by benchmarks, not asserted here (machines are noisy): this checks the
    # indexed IN path answers correctly at size, case-insensitively.
    result = execute_soql(org, soql)
    assert result.total_size == 200
    assert result.records[1]["External_Id__c"] == "EXT-500"
