"""The emulated org's DML semantics, asserted on exact Salesforce codes and messages.

Each rule is checked through the REST (dict) path and the Bulk (frame) path.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import polars as pl
import pytest

from sf_activations.emulator.errors import MoreThanOneRecord, SalesforceError
from sf_activations.emulator.ids import is_well_formed
from sf_activations.emulator.org import BulkOutcome, Org
from sf_activations.emulator.schema import FieldDef
from sf_activations_tests.support import Clock

READONLY_TAIL = (
    ". Please check the security settings of this field and verify that it is read/write for "
    "your profile or permission set."
)


START = datetime(2024, 9, 10, 13, 57, 45, tzinfo=UTC)
"""This file's clock starts here (one second per reading)."""


@pytest.fixture
def org() -> Org:
    return Org(clock=Clock(START))


def raises(fn: Callable[[], Any]) -> SalesforceError:
    with pytest.raises(SalesforceError) as info:
        fn()
    return info.value


def row_of(org: Org, sobject: str, record_id: str | None) -> dict[str, Any]:
    """The stored record (fails the test if it does not exist)."""
    row = org.row(sobject, record_id or "")
    assert row is not None, f"no {sobject} {record_id}"
    return row


def frame(**columns: list[str]) -> pl.DataFrame:
    return pl.DataFrame(columns, schema=dict.fromkeys(columns, pl.String))


def bulk(
    org: Org, sobject: str, op: str, data: dict[str, list[str]], ext: str | None = None
) -> BulkOutcome:
    return org.bulk_apply(
        sobject, op, pl.DataFrame(data, schema=dict.fromkeys(data, pl.String)), ext
    )


# ---- ids and retrieval -------------------------------------------------------------------


def test_create_returns_18_char_id_with_key_prefix_and_accepts_15_char_input(org: Org) -> None:
    acc = org.create("Account", {"Name": "Acme"})
    assert len(acc) == 18 and acc.startswith("001") and is_well_formed(acc)
    lead = org.create("Lead", {"LastName": "L", "Company": "C"})
    assert lead.startswith("00Q")
    record = org.retrieve("account", acc[:15], ["name"])
    assert record == {
        "attributes": {"type": "Account", "url": f"/services/data/v59.0/sobjects/Account/{acc}"},
        "Name": "Acme",
    }
    assert org.sobject_of_id(acc) == "Account"


def test_retrieve_errors_are_404_not_found(org: Org) -> None:
    bad = raises(lambda: org.retrieve("Account", "nope"))
    assert (bad.code, bad.status) == ("NOT_FOUND", 404)
    assert bad.message == "Provided external ID field does not exist or is not accessible: nope"
    missing = raises(lambda: org.retrieve("Account", "001000000000000AAA"))
    assert (missing.code, missing.message) == ("NOT_FOUND", "The requested resource does not exist")
    unknown = raises(lambda: org.describe("Acount"))
    assert (unknown.code, unknown.status) == ("NOT_FOUND", 404)


def test_audit_fields_and_owner_are_maintained(org: Org) -> None:
    acc = org.create("Account", {"Name": "Acme"})
    row = org.row("Account", acc)
    assert row is not None
    assert row["CreatedDate"] == row["LastModifiedDate"] == row["SystemModstamp"]
    assert row["CreatedDate"].endswith(".000+0000") and row["CreatedDate"].startswith(
        "2024-09-10T13:57:"
    )
    assert row["OwnerId"] == row["CreatedById"] == org.user_id and row["IsDeleted"] is False
    org.update("Account", acc, {"Name": "Acme 2"})
    after = org.row("Account", acc)
    assert after is not None and after["LastModifiedDate"] > row["LastModifiedDate"]
    assert after["CreatedDate"] == row["CreatedDate"]


def test_system_fields_are_not_writable(org: Org) -> None:
    err = raises(
        lambda: org.create("Account", {"Name": "A", "CreatedDate": "2024-01-01T00:00:00Z"})
    )
    assert err.code == "INVALID_FIELD_FOR_INSERT_UPDATE"
    assert err.message == "Unable to create/update fields: CreatedDate" + READONLY_TAIL
    assert err.fields == ["CreatedDate"]
    out = bulk(org, "Account", "insert", {"Name": ["A", "B"], "IsDeleted": ["true", ""]})
    assert out.errors[0] == (
        "INVALID_FIELD_FOR_INSERT_UPDATE:Unable to create/update fields: IsDeleted"
        + READONLY_TAIL
        + ":IsDeleted --"
    )
    assert out.errors[1] is None and out.created == [False, True]


def test_organization_and_user_records_exist(org: Org) -> None:
    orgs = list(org.rows("Organization"))
    assert len(orgs) == 1 and orgs[0]["Id"] == org.org_id and orgs[0]["IsSandbox"] is False
    assert org.org_id.startswith("00D") and len(org.org_id) == 18
    user = org.row("User", org.user_id)
    assert user is not None and user["Username"] == "admin@emulator.example"


# ---- type checks and coercion ------------------------------------------------------------


def test_string_too_long_rest_and_bulk(org: Org) -> None:
    long = "x" * 256
    err = raises(lambda: org.create("Account", {"Name": long}))
    assert err.code == "STRING_TOO_LONG" and err.fields == ["Name"]
    assert err.message == f"Account Name: data value too large: {long} (max length=255)"
    out = bulk(org, "Account", "insert", {"Name": [long]})
    assert out.errors == [
        f"STRING_TOO_LONG:Account Name: data value too large: {long} (max length=255):Name --"
    ]
    assert out.ids == [None]


def test_restricted_picklist(org: Org) -> None:
    email = org.create("EmailMessage", {"Subject": "Hi"})
    err = raises(
        lambda: org.create("EmailMessageRelation", {"EmailMessageId": email, "RelationType": "To"})
    )
    assert err.code == "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST"
    assert err.message == "Relation Type: bad value for restricted picklist field: To"
    out = bulk(
        org,
        "EmailMessageRelation",
        "insert",
        {"EmailMessageId": [email, email], "RelationType": ["CcAddress", "cc"]},
    )
    assert out.errors[0] is None
    assert out.errors[1] == (
        "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST:Relation Type: bad value for restricted "
        "picklist field: cc:RelationType --"
    )


def test_unrestricted_picklist_and_multipicklist_accept_values(org: Org) -> None:
    org.schema.add_field(
        "Account",
        FieldDef(
            name="Tags__c",
            label="Tags",
            type="multipicklist",
            length=4099,
            picklist_values=("a", "b"),
            restricted_picklist=True,
            custom=True,
        ),
    )
    acc = org.create("Account", {"Name": "A", "Industry": "Space", "Tags__c": "a;b"})
    assert org.retrieve("Account", acc, ["Industry", "Tags__c"])["Tags__c"] == "a;b"
    err = raises(lambda: org.create("Account", {"Name": "B", "Tags__c": "a;z"}))
    assert err.message == "Tags: bad value for restricted picklist field: a;z"


def test_email_format(org: Org) -> None:
    err = raises(lambda: org.create("Contact", {"LastName": "S", "Email": "not-an-email"}))
    assert (err.code, err.message, err.fields) == (
        "INVALID_EMAIL_ADDRESS",
        "Email: invalid email address: not-an-email",
        ["Email"],
    )
    out = bulk(org, "Contact", "insert", {"LastName": ["S", "T"], "Email": ["a@b.co", "a@"]})
    assert out.errors == [None, "INVALID_EMAIL_ADDRESS:Email: invalid email address: a@:Email --"]


def test_bulk_deserialize_errors_name_the_column_and_xsd_type(org: Org) -> None:
    out = bulk(
        org,
        "Opportunity",
        "insert",
        {
            "Name": ["A", "B", "C", "D"],
            "StageName": ["Prospecting"] * 4,
            "CloseDate": ["2024-01-31", "2003-04-987654321987654321", "2024-02-30", "2024-01-31"],
            "Amount": ["1e3", "", "", "ten"],
        },
    )
    assert out.errors[0] is None
    assert out.errors[1] == (
        "INVALID_FIELD:Failed to deserialize field at col 2. Due to, '2003-04-987654321987654321' "
        "is not a valid value for the type xsd:date:CloseDate --"
    )
    assert (
        out.errors[2] is not None
        and "'2024-02-30' is not a valid value for the type xsd:date" in out.errors[2]
    )
    assert out.errors[3] == (
        "INVALID_FIELD:Failed to deserialize field at col 3. Due to, 'ten' is not a valid value "
        "for the type xsd:double:Amount --"
    )
    row = org.row("Opportunity", out.ids[0] or "")
    assert row is not None and row["Amount"] == 1000.0 and row["CloseDate"] == "2024-01-31"


def test_booleans_are_strict(org: Org) -> None:
    out = bulk(
        org, "Contact", "insert", {"LastName": ["A", "B", "C"], "DoNotCall": ["true", "FALSE", "1"]}
    )
    assert out.errors[:2] == [None, None]
    assert out.errors[2] == (
        "INVALID_FIELD:Failed to deserialize field at col 1. Due to, '1' is not a valid value for "
        "the type xsd:boolean:DoNotCall --"
    )
    assert row_of(org, "Contact", out.ids[0])["DoNotCall"] is True
    err = raises(lambda: org.create("Contact", {"LastName": "A", "DoNotCall": "true"}))
    assert (err.code, err.message) == (
        "INVALID_TYPE_ON_FIELD_IN_RECORD",
        "Do Not Call: value not of required type: true",
    )
    contact = org.create("Contact", {"LastName": "A", "DoNotCall": True})
    assert org.retrieve("Contact", contact, ["DoNotCall"])["DoNotCall"] is True


def test_numbers_rest_and_bulk(org: Org) -> None:
    acc = org.create("Account", {"Name": "A", "NumberOfEmployees": 12, "AnnualRevenue": "1500.4"})
    got = org.retrieve("Account", acc, ["NumberOfEmployees", "AnnualRevenue"])
    assert got["NumberOfEmployees"] == 12 and got["AnnualRevenue"] == 1500.0  # scale 0 rounds
    err = raises(lambda: org.create("Account", {"Name": "B", "NumberOfEmployees": "many"}))
    assert (err.code, err.fields) == ("INVALID_TYPE_ON_FIELD_IN_RECORD", ["NumberOfEmployees"])
    out = bulk(
        org, "Account", "insert", {"Name": ["C", "D"], "NumberOfEmployees": ["1.5", "123456789"]}
    )
    assert out.errors[0] is not None and "xsd:int:NumberOfEmployees --" in out.errors[0]
    assert out.errors[1] == (
        "NUMBER_OUTSIDE_VALID_RANGE:Employees: value outside of valid range on numeric field: "
        "123456789:NumberOfEmployees --"
    )


def test_datetimes_are_normalised_to_utc(org: Org) -> None:
    email = org.create(
        "EmailMessage", {"Subject": "s", "MessageDate": "2024-09-10T15:57:45.5+02:00"}
    )
    assert (
        org.retrieve("EmailMessage", email, ["MessageDate"])["MessageDate"]
        == "2024-09-10T13:57:45.500+0000"
    )
    out = bulk(
        org,
        "EmailMessage",
        "insert",
        {
            "Subject": ["a", "b", "c"],
            "MessageDate": ["2024-09-10T13:57:45Z", "2024-09-10 13:57:45", "2024-09-10"],
        },
    )
    assert out.errors[0] is None
    assert row_of(org, "EmailMessage", out.ids[0])["MessageDate"] == "2024-09-10T13:57:45.000+0000"
    assert out.errors[1] is not None and "xsd:dateTime:MessageDate --" in out.errors[1]
    assert (
        out.errors[2] is not None
        and "'2024-09-10' is not a valid value for the type xsd:dateTime" in out.errors[2]
    )


def test_reference_fields(org: Org) -> None:
    acc = org.create("Account", {"Name": "A"})
    lead = org.create("Lead", {"LastName": "L", "Company": "C"})
    contact = org.create("Contact", {"LastName": "S", "AccountId": acc[:15]})
    assert row_of(org, "Contact", contact)["AccountId"] == acc
    malformed = raises(lambda: org.create("Contact", {"LastName": "S", "AccountId": "123"}))
    assert (malformed.code, malformed.message, malformed.fields) == (
        "MALFORMED_ID",
        "Account ID: id value of incorrect type: 123",
        ["AccountId"],
    )
    for bad in ("001000000000000AAA", lead):  # unknown id; id of the wrong object
        err = raises(lambda bad=bad: org.create("Contact", {"LastName": "S", "AccountId": bad}))  # type: ignore[misc]
        assert (err.code, err.message, err.fields) == (
            "INVALID_CROSS_REFERENCE_KEY",
            "invalid cross reference id",
            [],
        )
    out = bulk(org, "Contact", "insert", {"LastName": ["a", "b"], "AccountId": [acc, lead]})
    assert out.errors == [None, "INVALID_CROSS_REFERENCE_KEY:invalid cross reference id:--"]


# ---- required fields, unknown fields --------------------------------------------------------


def test_required_fields_on_create_and_update(org: Org) -> None:
    err = raises(lambda: org.create("Lead", {"FirstName": "F"}))
    assert (err.code, err.message, err.fields) == (
        "REQUIRED_FIELD_MISSING",
        "Required fields are missing: [LastName, Company]",
        ["LastName", "Company"],
    )
    contact = org.create("Contact", {"LastName": "S"})
    err = raises(lambda: org.update("Contact", contact, {"LastName": None}))
    assert (err.code, err.message) == (
        "REQUIRED_FIELD_MISSING",
        "Required fields are missing: [LastName]",
    )
    out = bulk(org, "Contact", "insert", {"LastName": ["", "#N/A", "ok"]})
    assert (
        out.errors[:2]
        == ["REQUIRED_FIELD_MISSING:Required fields are missing: [LastName]:LastName --"] * 2
    )
    upd = bulk(org, "Contact", "update", {"Id": [contact], "LastName": ["#N/A"]})
    assert upd.errors == [
        "REQUIRED_FIELD_MISSING:Required fields are missing: [LastName]:LastName --"
    ]


def test_unknown_fields(org: Org) -> None:
    err = raises(lambda: org.create("Account", {"Name": "A", "Foo__c": 1}))
    assert (err.code, err.message) == (
        "INVALID_FIELD",
        "No such column 'Foo__c' on sobject of type Account",
    )
    with pytest.raises(SalesforceError) as info:
        bulk(org, "Account", "insert", {"Name": ["A"], "StageName_invalid": ["x"]})
    assert (info.value.code, info.value.message) == (
        "InvalidBatch",
        "Field name not found : StageName_invalid",
    )
    assert org.count("Account") == 0


def test_bulk_empty_leaves_unchanged_and_na_sets_null(org: Org) -> None:
    acc = org.create("Account", {"Name": "A", "Phone": "1", "Website": "w"})
    out = bulk(org, "Account", "update", {"Id": [acc], "Phone": [""], "Website": ["#N/A"]})
    assert out.errors == [None] and out.ids == [acc] and out.created == [False]
    got = org.retrieve("Account", acc, ["Phone", "Website"])
    assert (got["Phone"], got["Website"]) == ("1", None)
    org.update("Account", acc, {"Phone": None})
    assert org.retrieve("Account", acc, ["Phone"])["Phone"] is None


def test_bulk_update_id_errors(org: Org) -> None:
    acc = org.create("Account", {"Name": "A"})
    gone = org.create("Account", {"Name": "B"})
    org.delete("Account", gone)
    out = bulk(
        org,
        "Account",
        "update",
        {
            "Id": ["", "bad", "001000000000000AAA", gone, acc[:15] + "aaa", acc[:15] + "ZZZ"],
            "Name": ["x"] * 6,
        },
    )
    assert out.errors[:4] == [
        "MISSING_ARGUMENT:Id not specified in an update call:--",
        "MALFORMED_ID:malformed id bad:--",
        "INVALID_CROSS_REFERENCE_KEY:invalid cross reference id:--",
        "ENTITY_IS_DELETED:entity is deleted:--",
    ]
    # the checksum suffix is case-insensitive, but it must match the base
    assert out.errors[4] is None and out.ids[4] == acc
    assert out.errors[5] == f"MALFORMED_ID:malformed id {acc[:15]}ZZZ:--"


# ---- uniqueness and external ids ------------------------------------------------------------


def test_duplicate_value_on_unique_field_is_case_insensitive(org: Org) -> None:
    acc = org.create("Account", {"Name": "A", "External_Id__c": "abc"})
    err = raises(lambda: org.create("Account", {"Name": "B", "External_Id__c": "ABC"}))
    assert (err.code, err.fields) == ("DUPLICATE_VALUE", [])
    assert (
        err.message
        == f"duplicate value found: External_Id__c duplicates value on record with id: {acc[:15]}"
    )
    out = bulk(org, "Account", "insert", {"Name": ["x", "y"], "External_Id__c": ["n1", "N1"]})
    assert out.errors[0] is None and out.ids[0] is not None
    assert out.errors[1] == (
        f"DUPLICATE_VALUE:duplicate value found: External_Id__c duplicates value on record with id: {out.ids[0][:15]}:--"
    )


def test_upsert_rest_matches_case_insensitively_on_unique_ci_field(org: Org) -> None:
    rid, created = org.upsert("Account", "External_Id__c", "K-1", {"Name": "A"})
    assert created is True
    again, created = org.upsert("account", "external_id__c", "k-1", {"Name": "B"})
    assert (again, created) == (rid, False)
    assert org.retrieve("Account", rid, ["Name", "External_Id__c"])["Name"] == "B"
    by_ext = org.retrieve_by_external_id("Account", "External_Id__c", "K-1", ["Name"])
    assert by_ext["Name"] == "B"
    err = raises(lambda: org.upsert("Account", "Name", "x", {}))
    assert (err.code, err.status) == ("NOT_FOUND", 404)
    assert err.message == "Provided external ID field does not exist or is not accessible: Name"


def test_non_unique_external_id_is_case_sensitive_and_may_match_several(org: Org) -> None:
    org.schema.add_field(
        "Account",
        FieldDef(
            name="Erp__c", label="ERP", type="string", length=20, external_id=True, custom=True
        ),
    )
    a = org.create("Account", {"Name": "A", "Erp__c": "E1"})
    org.create("Account", {"Name": "B", "Erp__c": "E1"})
    _, created = org.upsert("Account", "Erp__c", "e1", {"Name": "C"})
    assert created is True  # "e1" does not match "E1"
    with pytest.raises(MoreThanOneRecord) as info:
        org.upsert("Account", "Erp__c", "E1", {"Name": "D"})
    assert info.value.status == 300 and a in info.value.record_ids
    with pytest.raises(MoreThanOneRecord):
        org.retrieve_by_external_id("Account", "Erp__c", "E1")
    out = bulk(org, "Account", "upsert", {"Erp__c": ["E1"], "Name": ["x"]}, "Erp__c")
    assert out.errors == [
        "DUPLICATE_EXTERNAL_ID:A user-specified external ID matches more than one record during an upsert.:--"
    ]


def test_bulk_upsert_creates_updates_and_rejects_repeated_keys(org: Org) -> None:
    existing = org.create("Account", {"Name": "Old", "External_Id__c": "a"})
    out = bulk(
        org,
        "Account",
        "upsert",
        {"External_Id__c": ["A", "b", "c", "C", ""], "Name": ["New", "B", "c1", "c2", "x"]},
        "External_Id__c",
    )
    assert out.ids[0] == existing and out.created[0] is False and out.errors[0] is None
    assert out.created[1] is True and out.ids[1] is not None
    assert out.errors[2:] == [
        "DUPLICATE_VALUE:Duplicate external id specified: c:--",
        "DUPLICATE_VALUE:Duplicate external id specified: C:--",
        "MISSING_ARGUMENT:External_Id__c not specified:--",
    ]
    assert org.retrieve("Account", existing, ["Name"])["Name"] == "New"
    assert org.count("Account") == 2


# ---- lookups by external id -----------------------------------------------------------------


def test_relationship_lookup_rest_and_bulk(org: Org) -> None:
    acc = org.create("Account", {"Name": "A", "External_Id__c": "ACC-1"})
    contact = org.create("Contact", {"LastName": "S", "Account": {"External_Id__c": "acc-1"}})
    assert row_of(org, "Contact", contact)["AccountId"] == acc
    err = raises(
        lambda: org.create("Contact", {"LastName": "S", "Account": {"External_Id__c": "nope"}})
    )
    assert (err.code, err.message) == (
        "INVALID_FIELD",
        "Foreign key external ID: nope not found for field External_Id__c in entity Account",
    )
    out = bulk(
        org,
        "Contact",
        "insert",
        {"LastName": ["a", "b", "c"], "Account.External_Id__c": ["ACC-1", "missing", "#N/A"]},
    )
    assert out.errors == [
        None,
        "INVALID_FIELD:Foreign key external ID: missing not found for field External_Id__c in entity Account:--",
        None,
    ]
    assert row_of(org, "Contact", out.ids[0])["AccountId"] == acc
    assert row_of(org, "Contact", out.ids[2])["AccountId"] is None
    # idLookup standard field (Contact.Email) works as a parent key
    boss = org.create("Contact", {"LastName": "Boss", "Email": "boss@x.com"})
    out = bulk(org, "Contact", "insert", {"LastName": ["e"], "ReportsTo.Email": ["boss@x.com"]})
    assert row_of(org, "Contact", out.ids[0])["ReportsToId"] == boss


def test_relationship_lookup_requires_indexed_field(org: Org) -> None:
    org.create("Account", {"Name": "A"})
    err = raises(lambda: org.create("Contact", {"LastName": "S", "Account": {"Name": "A"}}))
    assert err.code == "INVALID_FIELD"
    out = bulk(org, "Contact", "insert", {"LastName": ["s"], "Account.Name": ["A"]})
    assert out.errors[0] is not None and out.errors[0].startswith("INVALID_FIELD:")
    with pytest.raises(SalesforceError) as info:
        bulk(org, "Contact", "insert", {"LastName": ["s"], "Acount.External_Id__c": ["A"]})
    assert info.value.message == "Field name not found : Acount.External_Id__c"


# ---- delete, recycle bin ---------------------------------------------------------------------


def test_delete_recycle_bin_and_hard_delete(org: Org) -> None:
    a = org.create("Account", {"Name": "A", "External_Id__c": "x"})
    b = org.create("Account", {"Name": "B"})
    org.delete("Account", a)
    assert org.count("Account") == 1 and org.count("Account", include_deleted=True) == 2
    assert [r["Id"] for r in org.rows("Account")] == [b]
    assert [r["IsDeleted"] for r in org.rows("Account", include_deleted=True)] == [True, False]
    again = raises(lambda: org.delete("Account", a))
    assert (again.code, again.message, again.status) == (
        "ENTITY_IS_DELETED",
        "entity is deleted",
        404,
    )
    upd = raises(lambda: org.update("Account", a, {"Name": "z"}))
    assert upd.code == "ENTITY_IS_DELETED"
    # a deleted record's external id no longer matches
    _, created = org.upsert("Account", "External_Id__c", "x", {"Name": "A2"})
    assert created is True
    out = bulk(org, "Account", "delete", {"Id": [a, b]})
    assert out.errors == ["ENTITY_IS_DELETED:entity is deleted:--", None] and out.created == [
        False,
        False,
    ]
    hard = bulk(org, "Account", "hardDelete", {"Id": [a]})
    assert hard.errors == [None]
    assert org.count("Account", include_deleted=True) == 2  # the new A2 and recycled B
    assert org.row("Account", a) is None


# ---- leads ----------------------------------------------------------------------------------


def test_convert_lead_creates_records_and_maps_external_id(org: Org) -> None:
    lead = org.create(
        "Lead",
        {
            "LastName": "Lee",
            "FirstName": "Ann",
            "Company": "Lee Inc",
            "Email": "ann@lee.com",
            "External_Id__c": "P-7",
        },
    )
    result = org.convert_lead(lead, create_opportunity=True)
    assert result["success"] is True and result["leadId"] == lead
    contact = org.row("Contact", result["contactId"])
    account = org.row("Account", result["accountId"])
    assert contact is not None and account is not None
    assert (contact["LastName"], contact["Email"], contact["External_Id__c"]) == (
        "Lee",
        "ann@lee.com",
        "P-7",
    )
    assert contact["AccountId"] == result["accountId"] and contact["Name"] == "Ann Lee"
    assert (account["Name"], account["External_Id__c"]) == ("Lee Inc", "P-7")
    assert row_of(org, "Opportunity", result["opportunityId"])["AccountId"] == result["accountId"]
    row = org.row("Lead", lead)
    assert row is not None and row["IsConverted"] is True and row["Status"] == "Closed - Converted"
    assert row["ConvertedContactId"] == result["contactId"] and row["ConvertedDate"] == "2024-09-10"
    err = raises(lambda: org.update("Lead", lead, {"Title": "CEO"}))
    assert (err.code, err.message) == (
        "CANNOT_UPDATE_CONVERTED_LEAD",
        "cannot reference converted lead",
    )
    out = bulk(
        org, "Lead", "upsert", {"External_Id__c": ["p-7"], "Title": ["CEO"]}, "External_Id__c"
    )
    assert out.errors == ["CANNOT_UPDATE_CONVERTED_LEAD:cannot reference converted lead:--"]
    org.allow_update_converted_leads = True
    org.update("Lead", lead, {"Title": "CEO"})
    ro = raises(lambda: org.update("Lead", lead, {"ConvertedOpportunityId": None}))
    assert ro.message == "Unable to create/update fields: ConvertedOpportunityId" + READONLY_TAIL


def test_convert_lead_into_existing_contact_fills_only_empty_fields(org: Org) -> None:
    acc = org.create("Account", {"Name": "Existing"})
    contact = org.create("Contact", {"LastName": "Keep", "AccountId": acc})
    lead = org.create(
        "Lead", {"LastName": "Lee", "Company": "X", "Title": "CTO", "External_Id__c": "L1"}
    )
    result = org.convert_lead(lead, account_id=acc, contact_id=contact)
    assert (result["accountId"], result["contactId"], result["opportunityId"]) == (
        acc,
        contact,
        None,
    )
    row = org.row("Contact", contact)
    assert row is not None and (row["LastName"], row["Title"], row["External_Id__c"]) == (
        "Keep",
        "CTO",
        "L1",
    )
    assert row_of(org, "Account", acc)["Name"] == "Existing"
    assert org.count("Contact") == 1


# ---- OpportunityContactRole, EmailMessageRelation ---------------------------------------------


def test_opportunity_contact_role_rules(org: Org) -> None:
    opp = org.create(
        "Opportunity", {"Name": "O", "StageName": "Prospecting", "CloseDate": "2024-12-31"}
    )
    c1 = org.create("Contact", {"LastName": "A"})
    c2 = org.create("Contact", {"LastName": "B"})
    r1 = org.create(
        "OpportunityContactRole", {"OpportunityId": opp, "ContactId": c1, "IsPrimary": True}
    )
    out = bulk(
        org,
        "OpportunityContactRole",
        "insert",
        {"OpportunityId": [opp], "ContactId": [c2], "IsPrimary": ["true"]},
    )
    r2 = out.ids[0] or ""
    assert row_of(org, "OpportunityContactRole", r1)["IsPrimary"] is False
    assert row_of(org, "OpportunityContactRole", r2)["IsPrimary"] is True
    err = raises(lambda: org.update("OpportunityContactRole", r1, {"OpportunityId": opp}))
    assert err.message == "Unable to create/update fields: OpportunityId" + READONLY_TAIL
    missing = raises(lambda: org.create("OpportunityContactRole", {"ContactId": c1}))
    assert missing.message == "Required fields are missing: [OpportunityId]"


def test_email_message_relation_derives_address_and_type(org: Org) -> None:
    contact = org.create("Contact", {"LastName": "A", "Email": "a@x.com"})
    email = org.create("EmailMessage", {"Subject": "Hi"})
    rel = org.create(
        "EmailMessageRelation",
        {"EmailMessageId": email, "RelationId": contact, "RelationType": "ToAddress"},
    )
    row = org.row("EmailMessageRelation", rel)
    assert row is not None and (row["RelationAddress"], row["RelationObjectType"]) == (
        "a@x.com",
        "Contact",
    )


# ---- duplicate rules, permissions -----------------------------------------------------------


def test_duplicate_rules_are_off_by_default_and_detect_when_on(org: Org) -> None:
    org.create("Contact", {"LastName": "A", "Email": "dup@x.com"})
    org.create("Lead", {"LastName": "A", "Company": "C", "Email": "dup@x.com"})  # off: allowed
    org.duplicate_rules_enabled = True
    err = raises(
        lambda: org.create("Lead", {"LastName": "B", "Company": "C", "Email": "DUP@x.com"})
    )
    assert (err.code, err.message) == ("DUPLICATES_DETECTED", "Use one of these records?")
    org.create("Account", {"Name": "Acme"})
    out = bulk(org, "Account", "insert", {"Name": ["acme", "Other"]})
    assert out.errors == ["DUPLICATES_DETECTED:Use one of these records?:--", None]
    # converting a lead does not count the lead itself as a duplicate of its new contact
    lead = org.create("Lead", {"LastName": "New", "Company": "Fresh Co", "Email": "new@x.com"})
    assert org.convert_lead(lead)["success"] is True


def test_field_level_security_and_object_permissions(org: Org) -> None:
    org.permissions.set_field("Account", "Phone", "none")
    org.permissions.set_field("Account", "Website", "read")
    names = {f["name"]: f for f in org.describe("Account")["fields"]}
    assert "Phone" not in names and names["Website"]["updateable"] is False
    err = raises(lambda: org.create("Account", {"Name": "A", "Phone": "1"}))
    assert err.message == "No such column 'Phone' on sobject of type Account"
    err = raises(lambda: org.create("Account", {"Name": "A", "Website": "w"}))
    assert err.code == "INVALID_FIELD_FOR_INSERT_UPDATE"
    with pytest.raises(SalesforceError, match="Field name not found : Phone"):
        bulk(org, "Account", "insert", {"Name": ["A"], "Phone": ["1"]})
    org.permissions.set_object("Account", create=False)
    err = raises(lambda: org.create("Account", {"Name": "A"}))
    assert (err.code, err.message) == (
        "INSUFFICIENT_ACCESS_OR_READONLY",
        "entity type cannot be inserted: Account",
    )
    org.permissions.set_object("Account", read=False)
    assert "Account" not in [o["name"] for o in org.describe_global()["sobjects"]]


# ---- fault rules ----------------------------------------------------------------------------


def test_lock_rules(org: Org) -> None:
    acc = org.create("Account", {"Name": "A"})
    other = org.create("Account", {"Name": "B"})
    org.add_lock_rule(sobject="Contact", parent_id=acc, count=1)
    out = bulk(
        org, "Contact", "insert", {"LastName": ["a", "b", "c"], "AccountId": [acc, other, acc]}
    )
    assert out.errors == [
        f"UNABLE_TO_LOCK_ROW:unable to obtain exclusive access to this record or 1 records: {acc}:--",
        None,
        None,
    ]
    org.add_lock_rule(sobject="Account")
    err = raises(lambda: org.update("Account", acc, {"Name": "z"}))
    assert (err.code, err.message) == (
        "UNABLE_TO_LOCK_ROW",
        f"unable to obtain exclusive access to this record or 1 records: {acc}",
    )
    org.clear_rules()
    org.update("Account", acc, {"Name": "z"})


def test_lock_share_is_deterministic() -> None:
    def failures() -> list[bool]:
        org = Org(clock=Clock(START))
        org.add_lock_rule(sobject="Account", share=0.5)
        out = bulk(org, "Account", "insert", {"Name": [f"n{i}" for i in range(200)]})
        return [e is not None for e in out.errors]

    first = failures()
    assert first == failures()
    assert 60 < sum(first) < 140


def test_triggers_reject_and_cost_apex_time(org: Org) -> None:
    org.add_trigger(
        "Account", field="Industry", equals="Banking", message="no banks", apex_ms_per_record=2.5
    )
    out = bulk(org, "Account", "insert", {"Name": ["a", "b"], "Industry": ["Banking", "Retail"]})
    assert out.errors == [
        "CANNOT_INSERT_UPDATE_ACTIVATE_ENTITY:SfaTrigger: execution of BeforeInsert caused by: no banks:--",
        None,
    ]
    assert out.apex_ms == 5
    acc = out.ids[1] or ""
    err = raises(lambda: org.update("Account", acc, {"Industry": "Banking"}))
    assert err.message == "SfaTrigger: execution of BeforeUpdate caused by: no banks"


# ---- atomic ---------------------------------------------------------------------------------


def test_atomic_undoes_everything_on_error(org: Org) -> None:
    keep = org.create("Account", {"Name": "Keep", "External_Id__c": "k"})
    with pytest.raises(SalesforceError), org.atomic():
        org.create("Account", {"Name": "New", "External_Id__c": "n"})
        org.update("Account", keep, {"Name": "Changed", "External_Id__c": "k2"})
        org.delete("Account", keep)
        org.create("Account", {})  # REQUIRED_FIELD_MISSING
    assert org.count("Account", include_deleted=True) == 1
    row = org.row("Account", keep)
    assert row is not None and (row["Name"], row["External_Id__c"], row["IsDeleted"]) == (
        "Keep",
        "k",
        False,
    )
    assert org.upsert("Account", "External_Id__c", "k", {"Name": "K"}) == (keep, False)
    assert org.upsert("Account", "External_Id__c", "n", {"Name": "N"})[1] is True


def test_bulk_upsert_by_id_and_id_relationship_columns(org: Org) -> None:
    acc = org.create("Account", {"Name": "A"})
    out = bulk(org, "Account", "upsert", {"Id": [acc, ""], "Name": ["A2", "B"]}, "Id")
    assert out.errors == [None, None] and out.created == [False, True] and out.ids[0] == acc
    assert row_of(org, "Account", acc)["Name"] == "A2"
    contacts = bulk(
        org,
        "Contact",
        "insert",
        {"LastName": ["x"], "Owner.Id": [org.user_id[:15]], "Account.Id": [acc]},
    )
    assert contacts.errors == [None]
    row = row_of(org, "Contact", contacts.ids[0])
    assert (row["OwnerId"], row["AccountId"]) == (org.user_id, acc)


def test_polymorphic_relationship_with_type_prefix(org: Org) -> None:
    lead = org.create(
        "Lead", {"LastName": "L", "Company": "C", "Email": "l@x.com", "External_Id__c": "LX"}
    )
    email = org.create("EmailMessage", {"Subject": "s"})
    out = bulk(
        org,
        "EmailMessageRelation",
        "insert",
        {
            "EmailMessageId": [email],
            "Lead:Relation.External_Id__c": ["lx"],
            "RelationType": ["ToAddress"],
        },
    )
    assert out.errors == [None]
    row = row_of(org, "EmailMessageRelation", out.ids[0])
    assert (row["RelationId"], row["RelationObjectType"], row["RelationAddress"]) == (
        lead,
        "Lead",
        "l@x.com",
    )


def test_columns_snapshot_skips_deleted_records(org: Org) -> None:
    a = org.create("Account", {"Name": "A"})
    org.create("Account", {"Name": "B"})
    org.delete("Account", a)
    assert org.columns("Account", ["name", "Phone"]) == {"Name": ["B"], "Phone": [None]}
    assert org.columns("Account", ["Name"], include_deleted=True) == {"Name": ["A", "B"]}
