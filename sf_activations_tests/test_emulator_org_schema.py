"""The emulated org's metadata: describe JSON, the default org and YAML org files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from sf_activations.emulator.errors import SalesforceError
from sf_activations.emulator.org import Org
from sf_activations.emulator.schema import OrgFileError, default_schema, load_org_yaml

DESCRIBE_FIELD_KEYS = {
    "name", "label", "type", "soapType", "length", "byteLength", "precision", "scale", "digits",
    "externalId", "unique", "caseSensitive", "idLookup", "createable", "updateable", "nillable",
    "defaultedOnCreate", "calculated", "autoNumber", "nameField", "restrictedPicklist",
    "dependentPicklist", "picklistValues", "referenceTo", "relationshipName", "relationshipOrder",
    "cascadeDelete", "restrictedDelete", "filterable", "sortable", "groupable", "custom",
}  # fmt: skip


def _fields(org: Org, sobject: str) -> dict[str, dict[str, Any]]:
    return {f["name"]: f for f in org.describe(sobject)["fields"]}


def test_describe_field_json_has_the_real_keys() -> None:
    fields = _fields(Org(), "Account")
    assert set(fields["Name"]) >= DESCRIBE_FIELD_KEYS
    ext = fields["External_Id__c"]
    assert (
        ext["externalId"],
        ext["unique"],
        ext["caseSensitive"],
        ext["idLookup"],
        ext["custom"],
    ) == (
        True,
        True,
        False,
        True,
        True,
    )
    assert (ext["type"], ext["soapType"], ext["length"]) == ("string", "xsd:string", 255)
    assert fields["Id"]["soapType"] == "tns:ID" and fields["Id"]["createable"] is False
    assert fields["Name"]["nillable"] is False and fields["Name"]["label"] == "Account Name"


def test_default_org_objects_and_constraints() -> None:
    org = Org()
    names = {o["name"] for o in org.describe_global()["sobjects"]}
    assert {
        "Account", "Contact", "Lead", "Opportunity", "OpportunityContactRole", "EmailMessage",
        "EmailMessageRelation", "User", "Organization", "Campaign", "CampaignMember", "Case",
    } <= names  # fmt: skip
    assert org.describe_global()["maxBatchSize"] == 200
    contact = _fields(org, "Contact")
    assert contact["Email"]["idLookup"] is True
    assert (contact["AccountId"]["referenceTo"], contact["AccountId"]["relationshipName"]) == (
        ["Account"],
        "Account",
    )
    ocr = _fields(org, "OpportunityContactRole")["OpportunityId"]
    assert (ocr["createable"], ocr["updateable"], ocr["nillable"]) == (True, False, False)
    emr = _fields(org, "EmailMessageRelation")["RelationType"]
    assert emr["restrictedPicklist"] is True
    assert [v["value"] for v in emr["picklistValues"]] == [
        "ToAddress",
        "CcAddress",
        "BccAddress",
        "FromAddress",
    ]
    lead = _fields(org, "Lead")
    for name in (
        "IsConverted",
        "ConvertedAccountId",
        "ConvertedContactId",
        "ConvertedOpportunityId",
        "ConvertedDate",
    ):
        assert lead[name]["createable"] is False and lead[name]["updateable"] is False
    children = {c["childSObject"] for c in org.describe("Account")["childRelationships"]}
    assert {"Contact", "Opportunity"} <= children
    assert default_schema().lead_convert_mapping["External_Id__c"] == (
        "Contact.External_Id__c",
        "Account.External_Id__c",
    )


def test_load_org_yaml_adds_objects_fields_and_lead_mapping(tmp_path: Path) -> None:
    path = tmp_path / "org.yaml"
    path.write_text(
        """
objects:
  - name: Invoice__c
    label: Invoice
    fields:
      - {name: Amount__c, type: currency, precision: 16, scale: 2}
      - {name: Invoice_Key__c, type: string, length: 40, external_id: true, unique: true}
      - {name: Account__c, type: reference, reference_to: [Account]}
fields:
  OpportunityContactRole:
    - {name: census_tracking_id__c, type: string, external_id: true, unique: true}
  Lead:
    - {name: Score__c, type: double}
lead_convert_mapping:
  Score__c: [Contact.Score__c]
""",
        encoding="utf-8",
    )
    schema = load_org_yaml(path)
    invoice = schema.get("invoice__c")
    assert invoice is not None and invoice.custom and invoice.key_prefix == "a01"
    ref = invoice.field("Account__c")
    assert ref is not None and ref.relationship_name == "Account__r"
    assert schema.lead_convert_mapping["Score__c"] == ("Contact.Score__c",)
    org = Org(schema)
    inv = org.create(
        "Invoice__c",
        {
            "Name": "I-1",
            "Amount__c": 10.555,
            "Account__r": {"Id": org.create("Account", {"Name": "A"})},
        },
    )
    assert (
        inv.startswith("a01")
        and org.retrieve("Invoice__c", inv, ["Amount__c"])["Amount__c"] == 10.56
    )
    _, created = org.upsert("Invoice__c", "Invoice_Key__c", "K", {"Name": "I-2"})
    assert created is True
    assert org.visible_field("OpportunityContactRole", "CENSUS_TRACKING_ID__C") is not None


def test_load_org_yaml_errors_name_file_and_entry(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(
        "objects:\n  - name: X__c\n    fields:\n      - {name: A__c, type: text}\n",
        encoding="utf-8",
    )
    with pytest.raises(
        OrgFileError,
        match=r"bad\.yaml: objects\[0\] \(X__c\)\.fields\[0\]: field A__c: unknown type 'text'",
    ):
        load_org_yaml(path)
    path.write_text("fields:\n  Nope:\n    - {name: A__c, type: string}\n", encoding="utf-8")
    with pytest.raises(OrgFileError, match=r"fields\.Nope: no such object"):
        load_org_yaml(path)


def test_bulk_cell_format_without_fields() -> None:
    assert SalesforceError("X", "m").bulk_cell() == "X:m:--"
    assert SalesforceError("X", "m", ["A", "B"]).bulk_cell() == "X:m:A,B --"
