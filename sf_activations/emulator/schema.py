"""The emulated org's metadata: objects, fields and their describe() JSON.

Definitions are frozen dataclasses; a ``Schema`` is the mutable catalogue of them (the admin API
adds objects and fields at run time). Names are looked up case-insensitively, as Salesforce does.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

import yaml

from sf_activations.emulator.ids import BASE62

_TEXT_TYPES = frozenset(
    {"string", "textarea", "email", "phone", "url", "picklist", "multipicklist"}
)
_FLOAT_TYPES = frozenset({"double", "currency", "percent"})
_UNGROUPABLE = frozenset({"double", "currency", "percent", "textarea", "multipicklist", "datetime"})
_SOAP_TYPES = {
    "id": "tns:ID",
    "reference": "tns:ID",
    "string": "xsd:string",
    "textarea": "xsd:string",
    "email": "xsd:string",
    "phone": "xsd:string",
    "url": "xsd:string",
    "picklist": "xsd:string",
    "multipicklist": "xsd:string",
    "boolean": "xsd:boolean",
    "double": "xsd:double",
    "currency": "xsd:double",
    "percent": "xsd:double",
    "int": "xsd:int",
    "date": "xsd:date",
    "datetime": "xsd:dateTime",
}

FIELD_TYPES = frozenset(
    {
        "id",
        "string",
        "textarea",
        "email",
        "phone",
        "url",
        "picklist",
        "multipicklist",
        "boolean",
        "double",
        "currency",
        "percent",
        "int",
        "date",
        "datetime",
        "reference",
    }
)


@dataclass(frozen=True)
class FieldDef:
    """One field of an object, with the attributes describe() reports."""

    name: str
    label: str
    type: str
    length: int = 0
    precision: int = 0
    scale: int = 0
    external_id: bool = False
    unique: bool = False
    case_sensitive: bool = False
    id_lookup: bool = False
    createable: bool = True
    updateable: bool = True
    nillable: bool = True
    defaulted_on_create: bool = False
    calculated: bool = False
    auto_number: bool = False
    name_field: bool = False
    restricted_picklist: bool = False
    picklist_values: tuple[str, ...] = ()
    default_value: object = None
    reference_to: tuple[str, ...] = ()
    relationship_name: str | None = None
    custom: bool = False

    def describe(self) -> dict[str, Any]:
        """The field's entry in describe()'s ``fields`` array (salesforce-api.md §2.2)."""
        is_text = self.type in _TEXT_TYPES
        is_ref = self.type in ("id", "reference")
        length = 18 if is_ref else (self.length if is_text else 0)
        return {
            "name": self.name,
            "label": self.label,
            "type": self.type,
            "soapType": _SOAP_TYPES[self.type],
            "length": length,
            "byteLength": length * 3 if is_text else length,
            "precision": self.precision if self.type in _FLOAT_TYPES else 0,
            "scale": self.scale if self.type in _FLOAT_TYPES else 0,
            "digits": self.precision if self.type == "int" else 0,
            "externalId": self.external_id,
            "unique": self.unique,
            "caseSensitive": self.case_sensitive,
            "idLookup": self.id_lookup,
            "createable": self.createable,
            "updateable": self.updateable,
            "nillable": self.nillable,
            "defaultedOnCreate": self.defaulted_on_create,
            "defaultValue": self.default_value,
            "calculated": self.calculated,
            "autoNumber": self.auto_number,
            "nameField": self.name_field,
            "restrictedPicklist": self.restricted_picklist,
            "dependentPicklist": False,
            "picklistValues": [
                {
                    "active": True,
                    "defaultValue": value == self.default_value,
                    "label": value,
                    "validFor": None,
                    "value": value,
                }
                for value in self.picklist_values
            ],
            "referenceTo": list(self.reference_to),
            "relationshipName": self.relationship_name,
            "relationshipOrder": None,
            "cascadeDelete": False,
            "restrictedDelete": False,
            "filterable": self.type != "textarea" or self.length <= 255,
            "sortable": self.type not in ("multipicklist",)
            and not (self.type == "textarea" and self.length > 255),
            "groupable": self.type not in _UNGROUPABLE,
            "custom": self.custom,
        }

    @property
    def required_on_create(self) -> bool:
        """A create without this field fails with REQUIRED_FIELD_MISSING."""
        return (
            self.createable
            and not self.nillable
            and not self.defaulted_on_create
            and self.type != "boolean"
        )

    @property
    def key_case_insensitive(self) -> bool:
        """External-id matching and uniqueness ignore case (salesforce-api.md §5)."""
        return self.unique and not self.case_sensitive and self.type in _TEXT_TYPES


@dataclass(frozen=True)
class ObjectDef:
    """One sObject type: its names, key prefix, object-level CRUD and fields."""

    name: str
    label: str
    label_plural: str
    key_prefix: str
    custom: bool
    fields: tuple[FieldDef, ...]
    createable: bool = True
    updateable: bool = True
    deletable: bool = True
    queryable: bool = True

    @functools.cached_property
    def _fields_by_name(self) -> dict[str, FieldDef]:
        # Lookups by name are on every DML path; a frozen instance never changes its fields.
        by_name: dict[str, FieldDef] = {}
        for f in self.fields:
            by_name.setdefault(f.name.lower(), f)
        return by_name

    def field(self, name: str) -> FieldDef | None:
        """The field called ``name`` (case-insensitive), or None."""
        return self._fields_by_name.get(name.lower())

    def relationship(self, rel_name: str) -> FieldDef | None:
        """The reference field whose relationshipName is ``rel_name`` (case-insensitive)."""
        lowered = rel_name.lower()
        for f in self.fields:
            if f.relationship_name is not None and f.relationship_name.lower() == lowered:
                return f
        return None

    def with_field(self, field: FieldDef) -> ObjectDef:
        """A copy with ``field`` added (or replacing the field of the same name)."""
        kept = tuple(f for f in self.fields if f.name.lower() != field.name.lower())
        return replace(self, fields=(*kept, field))

    def urls(self) -> dict[str, str]:
        """The ``urls`` block of describe (version placeholder ``{version}``)."""
        base = f"/services/data/v{{version}}/sobjects/{self.name}"
        return {
            "sobject": base,
            "describe": f"{base}/describe",
            "rowTemplate": f"{base}/{{ID}}",
        }

    def describe_summary(self) -> dict[str, Any]:
        """This object's entry in describe global's ``sobjects`` list."""
        return {
            "name": self.name,
            "label": self.label,
            "labelPlural": self.label_plural,
            "keyPrefix": self.key_prefix,
            "custom": self.custom,
            "createable": self.createable,
            "updateable": self.updateable,
            "deletable": self.deletable,
            "queryable": self.queryable,
            "retrieveable": self.queryable,
            "searchable": self.queryable,
            "layoutable": True,
            "urls": self.urls(),
        }

    def describe(self, schema: Schema | None = None) -> dict[str, Any]:
        """The object's describe JSON; child relationships are computed from ``schema``."""
        body = self.describe_summary()
        body["fields"] = [f.describe() for f in self.fields]
        body["childRelationships"] = schema.child_relationships(self.name) if schema else []
        return body


class Schema:
    """The set of objects in an org, looked up case-insensitively (thread-safe).

    ``lead_convert_mapping`` maps a Lead field to the ``Object.Field`` targets lead conversion
    copies it to (the "Map Lead Fields" setting), e.g. ``External_Id__c`` ->
    ``("Contact.External_Id__c", "Account.External_Id__c")``.
    """

    def __init__(self, objects: list[ObjectDef] | None = None) -> None:
        self._objects: dict[str, ObjectDef] = {}
        self._lock = threading.RLock()
        self.lead_convert_mapping: dict[str, tuple[str, ...]] = {}
        for obj in objects or ():
            self.add_object(obj)

    def get(self, name: str) -> ObjectDef | None:
        """The object called ``name`` (case-insensitive), or None."""
        return self._objects.get(name.lower())

    def objects(self) -> list[ObjectDef]:
        """All objects, in the order they were added."""
        return list(self._objects.values())

    def by_key_prefix(self, prefix: str) -> ObjectDef | None:
        """The object whose ids start with ``prefix`` (3 characters, case-sensitive)."""
        for obj in self._objects.values():
            if obj.key_prefix == prefix:
                return obj
        return None

    def add_object(self, obj: ObjectDef) -> None:
        """Add (or replace) an object definition."""
        with self._lock:
            other = self.by_key_prefix(obj.key_prefix)
            if other is not None and other.name.lower() != obj.name.lower():
                msg = f"key prefix {obj.key_prefix} of {obj.name} is already used by {other.name}"
                raise ValueError(msg)
            self._objects[obj.name.lower()] = obj

    def add_field(self, object_name: str, field: FieldDef) -> None:
        """Add (or replace) one field of an existing object."""
        with self._lock:
            obj = self.get(object_name)
            if obj is None:
                msg = f"no object {object_name!r} in the schema"
                raise KeyError(msg)
            self._objects[obj.name.lower()] = obj.with_field(field)

    def next_custom_prefix(self) -> str:
        """A free key prefix for a new custom object (a01, a02, ...)."""
        used = {obj.key_prefix for obj in self._objects.values()}
        for n in range(1, 62 * 62):
            prefix = "a" + BASE62[n // 62] + BASE62[n % 62]
            if prefix not in used:
                return prefix
        msg = "no free custom key prefix"
        raise ValueError(msg)

    def child_relationships(self, parent: str) -> list[dict[str, Any]]:
        """describe()'s ``childRelationships`` of ``parent``, computed from reference fields."""
        out: list[dict[str, Any]] = []
        for obj in self._objects.values():
            for f in obj.fields:
                if (
                    f.name == "MasterRecordId"
                    or f.type != "reference"
                    or not any(r.lower() == parent.lower() for r in f.reference_to)
                ):
                    continue
                out.append(
                    {
                        "childSObject": obj.name,
                        "field": f.name,
                        "relationshipName": _plural_relationship(obj),
                        "cascadeDelete": False,
                        "restrictedDelete": False,
                        "deprecatedAndHidden": False,
                    }
                )
        return out


def _plural_relationship(obj: ObjectDef) -> str | None:
    if obj.custom:
        return obj.label_plural.replace(" ", "_") + "__r"
    return obj.label_plural.replace(" ", "")


# ---------------------------------------------------------------------------------------------
# The default org: a fresh Developer Edition org's main objects and fields.
# ---------------------------------------------------------------------------------------------


def _text(name: str, label: str, length: int = 255, **kw: Any) -> FieldDef:
    return FieldDef(name=name, label=label, type=kw.pop("type", "string"), length=length, **kw)


def _pick(name: str, label: str, values: tuple[str, ...], **kw: Any) -> FieldDef:
    ftype = kw.pop("type", "picklist")
    return FieldDef(
        name=name,
        label=label,
        type=ftype,
        length=4099 if ftype == "multipicklist" else 255,
        picklist_values=values,
        **kw,
    )


def _ref(name: str, label: str, to: tuple[str, ...], rel: str | None, **kw: Any) -> FieldDef:
    return FieldDef(
        name=name,
        label=label,
        type="reference",
        length=18,
        reference_to=to,
        relationship_name=rel,
        **kw,
    )


def _bool(name: str, label: str, default: bool = False, **kw: Any) -> FieldDef:
    return FieldDef(
        name=name,
        label=label,
        type="boolean",
        nillable=False,
        defaulted_on_create=True,
        default_value=default,
        **kw,
    )


def _num(
    name: str, label: str, ftype: str = "double", precision: int = 18, scale: int = 0, **kw: Any
) -> FieldDef:
    return FieldDef(name=name, label=label, type=ftype, precision=precision, scale=scale, **kw)


_RO: dict[str, Any] = {"createable": False, "updateable": False}


def external_id_field(name: str = "External_Id__c", label: str = "External Id") -> FieldDef:
    """A custom Text(255) External ID, Unique, case-insensitive field (as the guide recommends)."""
    return FieldDef(
        name=name,
        label=label,
        type="string",
        length=255,
        external_id=True,
        unique=True,
        case_sensitive=False,
        id_lookup=True,
        custom=True,
    )


def system_fields(*, owner: bool = True) -> tuple[FieldDef, ...]:
    """Id, IsDeleted, audit fields and (optionally) OwnerId, as every object has them."""
    fields = [
        FieldDef(
            name="Id",
            label="Record ID",
            type="id",
            length=18,
            id_lookup=True,
            nillable=False,
            defaulted_on_create=True,
            **_RO,
        ),
        FieldDef(
            name="IsDeleted",
            label="Deleted",
            type="boolean",
            nillable=False,
            defaulted_on_create=True,
            default_value=False,
            **_RO,
        ),
    ]
    if owner:
        fields.append(
            _ref(
                "OwnerId", "Owner ID", ("User",), "Owner", nillable=False, defaulted_on_create=True
            )
        )
    fields += [
        FieldDef(
            name="CreatedDate",
            label="Created Date",
            type="datetime",
            nillable=False,
            defaulted_on_create=True,
            **_RO,
        ),
        _ref(
            "CreatedById",
            "Created By ID",
            ("User",),
            "CreatedBy",
            nillable=False,
            defaulted_on_create=True,
            **_RO,
        ),
        FieldDef(
            name="LastModifiedDate",
            label="Last Modified Date",
            type="datetime",
            nillable=False,
            defaulted_on_create=True,
            **_RO,
        ),
        _ref(
            "LastModifiedById",
            "Last Modified By ID",
            ("User",),
            "LastModifiedBy",
            nillable=False,
            defaulted_on_create=True,
            **_RO,
        ),
        FieldDef(
            name="SystemModstamp",
            label="System Modstamp",
            type="datetime",
            nillable=False,
            defaulted_on_create=True,
            **_RO,
        ),
    ]
    return tuple(fields)


def _address(prefix: str, label: str) -> tuple[FieldDef, ...]:
    return (
        _text(f"{prefix}Street", f"{label} Street", type="textarea"),
        _text(f"{prefix}City", f"{label} City", 40),
        _text(f"{prefix}State", f"{label} State/Province", 80),
        _text(f"{prefix}PostalCode", f"{label} Zip/Postal Code", 20),
        _text(f"{prefix}Country", f"{label} Country", 80),
    )


_LEAD_SOURCES = ("Web", "Phone Inquiry", "Partner Referral", "Purchased List", "Other")
_INDUSTRIES = (
    "Agriculture",
    "Banking",
    "Education",
    "Energy",
    "Healthcare",
    "Retail",
    "Technology",
    "Other",
)
_SALUTATIONS = ("Mr.", "Ms.", "Mrs.", "Dr.", "Prof.")
_STAGES = (
    "Prospecting",
    "Qualification",
    "Needs Analysis",
    "Value Proposition",
    "Id. Decision Makers",
    "Perception Analysis",
    "Proposal/Price Quote",
    "Negotiation/Review",
    "Closed Won",
    "Closed Lost",
)
LEAD_STATUSES = (
    "Open - Not Contacted",
    "Working - Contacted",
    "Closed - Converted",
    "Closed - Not Converted",
)


def _std(
    name: str, label: str, plural: str, prefix: str, fields: tuple[FieldDef, ...], **kw: Any
) -> ObjectDef:
    return ObjectDef(
        name=name,
        label=label,
        label_plural=plural,
        key_prefix=prefix,
        custom=False,
        fields=fields,
        **kw,
    )


def _master(obj: str) -> FieldDef:
    return _ref("MasterRecordId", "Master Record ID", (obj,), "MasterRecord", **_RO)


def _default_objects() -> list[ObjectDef]:
    account = _std(
        "Account",
        "Account",
        "Accounts",
        "001",
        (
            *system_fields()[:2],
            _master("Account"),
            _text("Name", "Account Name", nillable=False, name_field=True),
            _pick(
                "Type",
                "Account Type",
                ("Prospect", "Customer - Direct", "Customer - Channel", "Partner", "Other"),
            ),
            _ref("ParentId", "Parent Account ID", ("Account",), "Parent"),
            *_address("Billing", "Billing"),
            *_address("Shipping", "Shipping"),
            _text("Phone", "Account Phone", 40, type="phone"),
            _text("Fax", "Account Fax", 40, type="phone"),
            _text("AccountNumber", "Account Number", 40),
            _text("Website", "Website", 255, type="url"),
            _pick("Industry", "Industry", _INDUSTRIES),
            _num("AnnualRevenue", "Annual Revenue", "currency", 18, 0),
            _num("NumberOfEmployees", "Employees", "int", 8),
            _pick("Rating", "Account Rating", ("Hot", "Warm", "Cold")),
            _text("Site", "Account Site", 80),
            _text("Description", "Account Description", 32000, type="textarea"),
            _pick("AccountSource", "Account Source", _LEAD_SOURCES),
            *system_fields()[2:],
            external_id_field(),
        ),
    )
    contact = _std(
        "Contact",
        "Contact",
        "Contacts",
        "003",
        (
            *system_fields()[:2],
            _master("Contact"),
            _ref("AccountId", "Account ID", ("Account",), "Account"),
            _text("LastName", "Last Name", 80, nillable=False),
            _text("FirstName", "First Name", 40),
            _pick("Salutation", "Salutation", _SALUTATIONS),
            _text("Name", "Full Name", 121, name_field=True, **_RO),
            *_address("Mailing", "Mailing"),
            _text("Phone", "Business Phone", 40, type="phone"),
            _text("MobilePhone", "Mobile Phone", 40, type="phone"),
            _text("Email", "Email", 80, type="email", id_lookup=True),
            _text("Title", "Title", 128),
            _text("Department", "Department", 80),
            _ref("ReportsToId", "Reports To ID", ("Contact",), "ReportsTo"),
            _pick("LeadSource", "Lead Source", _LEAD_SOURCES),
            FieldDef(name="Birthdate", label="Birthdate", type="date"),
            _text("Description", "Contact Description", 32000, type="textarea"),
            _bool("HasOptedOutOfEmail", "Email Opt Out"),
            _bool("DoNotCall", "Do Not Call"),
            *system_fields()[2:],
            external_id_field(),
        ),
    )
    lead = _std(
        "Lead",
        "Lead",
        "Leads",
        "00Q",
        (
            *system_fields()[:2],
            _master("Lead"),
            _text("LastName", "Last Name", 80, nillable=False),
            _text("FirstName", "First Name", 40),
            _pick("Salutation", "Salutation", _SALUTATIONS),
            _text("Name", "Full Name", 121, name_field=True, **_RO),
            _text("Title", "Title", 128),
            _text("Company", "Company", 255, nillable=False),
            _text("Street", "Street", type="textarea"),
            _text("City", "City", 40),
            _text("State", "State/Province", 80),
            _text("PostalCode", "Zip/Postal Code", 20),
            _text("Country", "Country", 80),
            _text("Phone", "Phone", 40, type="phone"),
            _text("MobilePhone", "Mobile Phone", 40, type="phone"),
            _text("Email", "Email", 80, type="email", id_lookup=True),
            _text("Website", "Website", 255, type="url"),
            _text("Description", "Description", 32000, type="textarea"),
            _pick("LeadSource", "Lead Source", _LEAD_SOURCES),
            _pick(
                "Status",
                "Status",
                LEAD_STATUSES,
                nillable=False,
                defaulted_on_create=True,
                default_value=LEAD_STATUSES[0],
            ),
            _pick("Industry", "Industry", _INDUSTRIES),
            _pick("Rating", "Rating", ("Hot", "Warm", "Cold")),
            _num("AnnualRevenue", "Annual Revenue", "currency", 18, 0),
            _num("NumberOfEmployees", "Employees", "int", 8),
            _bool("IsConverted", "Converted", **_RO),
            FieldDef(name="ConvertedDate", label="Converted Date", type="date", **_RO),
            _ref(
                "ConvertedAccountId",
                "Converted Account ID",
                ("Account",),
                "ConvertedAccount",
                **_RO,
            ),
            _ref(
                "ConvertedContactId",
                "Converted Contact ID",
                ("Contact",),
                "ConvertedContact",
                **_RO,
            ),
            _ref(
                "ConvertedOpportunityId",
                "Converted Opportunity ID",
                ("Opportunity",),
                "ConvertedOpportunity",
                **_RO,
            ),
            _bool("IsUnreadByOwner", "Unread By Owner"),
            _bool("HasOptedOutOfEmail", "Email Opt Out"),
            *system_fields()[2:],
            external_id_field(),
        ),
    )
    opportunity = _std(
        "Opportunity",
        "Opportunity",
        "Opportunities",
        "006",
        (
            *system_fields()[:2],
            _ref("AccountId", "Account ID", ("Account",), "Account"),
            _text("Name", "Name", 120, nillable=False, name_field=True),
            _text("Description", "Description", 32000, type="textarea"),
            _pick("StageName", "Stage", _STAGES, nillable=False),
            _num("Amount", "Amount", "currency", 18, 2),
            _num("Probability", "Probability (%)", "percent", 3, 0),
            FieldDef(name="CloseDate", label="Close Date", type="date", nillable=False),
            _pick("Type", "Opportunity Type", ("Existing Customer - Upgrade", "New Customer")),
            _text("NextStep", "Next Step", 255),
            _pick("LeadSource", "Lead Source", _LEAD_SOURCES),
            _bool("IsClosed", "Closed", calculated=True, **_RO),
            _bool("IsWon", "Won", calculated=True, **_RO),
            _pick(
                "ForecastCategoryName",
                "Forecast Category",
                ("Pipeline", "Best Case", "Commit", "Omitted", "Closed"),
            ),
            _ref("CampaignId", "Campaign ID", ("Campaign",), "Campaign"),
            *system_fields()[2:],
        ),
    )
    ocr = _std(
        "OpportunityContactRole",
        "Opportunity Contact Role",
        "Opportunity Contact Role",
        "00K",
        (
            *system_fields(owner=False)[:2],
            _ref(
                "OpportunityId",
                "Opportunity ID",
                ("Opportunity",),
                "Opportunity",
                nillable=False,
                updateable=False,
            ),
            _ref("ContactId", "Contact ID", ("Contact",), "Contact", nillable=False),
            _pick(
                "Role",
                "Role",
                (
                    "Business User",
                    "Decision Maker",
                    "Economic Buyer",
                    "Economic Decision Maker",
                    "Evaluator",
                    "Executive Sponsor",
                    "Influencer",
                    "Technical Buyer",
                    "Other",
                ),
            ),
            _bool("IsPrimary", "Primary"),
            *system_fields(owner=False)[2:],
        ),
    )
    email_message = _std(
        "EmailMessage",
        "Email Message",
        "Email Messages",
        "02s",  # UNVERIFIED prefix (salesforce-api.md §5: go-emulator table only)
        (
            *system_fields(owner=False)[:2],
            _ref("ParentId", "Parent ID", ("Case",), "Parent"),
            _ref(
                "RelatedToId",
                "Related To ID",
                ("Account", "Opportunity", "Case", "Campaign"),
                "RelatedTo",
            ),
            _text("Subject", "Subject", 3000),
            _text("TextBody", "Text Body", 131072, type="textarea"),
            _text("HtmlBody", "HTML Body", 131072, type="textarea"),
            _text("FromName", "From Name", 1000),
            _text("FromAddress", "From Address", 1000, type="email"),
            _text("ToAddress", "To Address", 4000),
            _text("CcAddress", "CC Address", 4000),
            _text("BccAddress", "BCC Address", 4000),
            _bool("Incoming", "Is Incoming"),
            _pick(
                "Status",
                "Status",
                ("0", "1", "2", "3", "4", "5"),
                restricted_picklist=True,
                nillable=False,
                defaulted_on_create=True,
                default_value="3",
            ),
            FieldDef(name="MessageDate", label="Message Date", type="datetime"),
            *system_fields(owner=False)[2:],
        ),
    )
    email_relation = _std(
        "EmailMessageRelation",
        "Email Message Relation",
        "Email Message Relations",
        "0EF",  # UNVERIFIED prefix: no source gives it
        (
            *system_fields(owner=False)[:2],
            _ref(
                "EmailMessageId",
                "Email Message ID",
                ("EmailMessage",),
                "EmailMessage",
                nillable=False,
                updateable=False,
            ),
            _ref("RelationId", "Relation ID", ("Contact", "Lead", "User"), "Relation"),
            _pick(
                "RelationType",
                "Relation Type",
                ("ToAddress", "CcAddress", "BccAddress", "FromAddress"),
                restricted_picklist=True,
                nillable=False,
            ),
            _text("RelationAddress", "Relation Address", 3000),
            _text("RelationObjectType", "Relation Object Type", 40, **_RO),
            *system_fields(owner=False)[2:],
        ),
    )
    user = _std(
        "User",
        "User",
        "Users",
        "005",
        (
            *system_fields(owner=False)[:2],
            _text("Username", "Username", 80, nillable=False, unique=True, id_lookup=True),
            _text("LastName", "Last Name", 80, nillable=False),
            _text("FirstName", "First Name", 40),
            _text("Name", "Full Name", 121, name_field=True, **_RO),
            _text("Email", "Email", 128, type="email", nillable=False),
            _text("Alias", "Alias", 8, nillable=False),
            _bool("IsActive", "Active", default=True),
            _text("TimeZoneSidKey", "Time Zone", 40),
            *system_fields(owner=False)[2:],
        ),
        createable=False,
        deletable=False,
    )
    organization = _std(
        "Organization",
        "Organization",
        "Organizations",
        "00D",
        (
            *system_fields(owner=False)[:1],
            _text("Name", "Name", 80, name_field=True, **_RO),
            _bool("IsSandbox", "Is Sandbox", **_RO),
            _text("InstanceName", "Instance Name", 5, **_RO),
            _pick(
                "OrganizationType",
                "Edition",
                (
                    "Developer Edition",
                    "Enterprise Edition",
                    "Unlimited Edition",
                    "Professional Edition",
                ),
                **_RO,
            ),
            _text("NamespacePrefix", "Namespace Prefix", 15, **_RO),
            FieldDef(
                name="TrialExpirationDate", label="Trial Expiration Date", type="datetime", **_RO
            ),
            _text("DefaultLocaleSidKey", "Locale", 40, **_RO),
            *system_fields(owner=False)[2:],
        ),
        createable=False,
        updateable=False,
        deletable=False,
    )
    campaign = _std(
        "Campaign",
        "Campaign",
        "Campaigns",
        "701",
        (
            *system_fields()[:2],
            _text("Name", "Name", 80, nillable=False, name_field=True),
            _ref("ParentId", "Parent Campaign ID", ("Campaign",), "Parent"),
            _pick("Type", "Type", ("Conference", "Webinar", "Email", "Advertisement", "Other")),
            _pick("Status", "Status", ("Planned", "In Progress", "Completed", "Aborted")),
            FieldDef(name="StartDate", label="Start Date", type="date"),
            FieldDef(name="EndDate", label="End Date", type="date"),
            _bool("IsActive", "Active"),
            _text("Description", "Description", 32000, type="textarea"),
            *system_fields()[2:],
        ),
    )
    campaign_member = _std(
        "CampaignMember",
        "Campaign Member",
        "Campaign Members",
        "00v",
        (
            *system_fields(owner=False)[:2],
            _ref(
                "CampaignId",
                "Campaign ID",
                ("Campaign",),
                "Campaign",
                nillable=False,
                updateable=False,
            ),
            _ref("LeadId", "Lead ID", ("Lead",), "Lead", updateable=False),
            _ref("ContactId", "Contact ID", ("Contact",), "Contact", updateable=False),
            _pick(
                "Status",
                "Status",
                ("Planned", "Received", "Responded", "Sent"),
                defaulted_on_create=True,
                default_value="Sent",
            ),
            _bool("HasResponded", "Responded", calculated=True, **_RO),
            *system_fields(owner=False)[2:],
        ),
    )
    case = _std(
        "Case",
        "Case",
        "Cases",
        "500",
        (
            *system_fields()[:2],
            _text(
                "CaseNumber",
                "Case Number",
                30,
                auto_number=True,
                name_field=True,
                defaulted_on_create=True,
                nillable=False,
                **_RO,
            ),
            _ref("AccountId", "Account ID", ("Account",), "Account"),
            _ref("ContactId", "Contact ID", ("Contact",), "Contact"),
            _text("Subject", "Subject", 255),
            _text("Description", "Description", 32000, type="textarea"),
            _pick(
                "Status",
                "Status",
                ("New", "Working", "Escalated", "Closed"),
                nillable=False,
                defaulted_on_create=True,
                default_value="New",
            ),
            _pick("Origin", "Case Origin", ("Phone", "Email", "Web")),
            _pick(
                "Priority",
                "Priority",
                ("High", "Medium", "Low"),
                defaulted_on_create=True,
                default_value="Medium",
            ),
            _text("SuppliedEmail", "Web Email", 80, type="email"),
            _bool("IsClosed", "Closed", calculated=True, **_RO),
            *system_fields()[2:],
        ),
    )
    return [
        account,
        contact,
        lead,
        opportunity,
        ocr,
        email_message,
        email_relation,
        user,
        organization,
        campaign,
        campaign_member,
        case,
    ]


def default_schema() -> Schema:
    """A schema like a fresh Developer Edition org, plus ``External_Id__c`` on Account/Contact/Lead.

    Lead conversion copies ``Lead.External_Id__c`` to the Contact's and the Account's
    ``External_Id__c`` (the "Map Lead Fields" setting the guide asks admins to make).
    """
    schema = Schema(_default_objects())
    schema.lead_convert_mapping["External_Id__c"] = (
        "Contact.External_Id__c",
        "Account.External_Id__c",
    )
    return schema


# ---------------------------------------------------------------------------------------------
# YAML org files (format documented in docs/emulator-org.md)
# ---------------------------------------------------------------------------------------------

_FIELD_KEYS = {f.name for f in fields(FieldDef)} | {"default"}
# The keys of one object entry, in an org file and in the admin API's ``objects``.
OBJECT_KEYS = frozenset(
    {
        "name",
        "label",
        "label_plural",
        "key_prefix",
        "fields",
        "createable",
        "updateable",
        "deletable",
        "queryable",
    }
)
_TOP_KEYS = {"objects", "fields", "lead_convert_mapping"}


_OBJECT_FLAGS = ("createable", "updateable", "deletable", "queryable")


class OrgFileError(ValueError):
    """A YAML org file that does not describe a valid org (the message names file and entry)."""


def field_from_mapping(
    spec: Mapping[str, Any], *, where: str, custom: bool | None = None
) -> FieldDef:
    """Build a FieldDef from a YAML/JSON mapping (keys are FieldDef attribute names).

    Used by ``load_org_yaml`` and by the admin API. ``label`` defaults to the name without
    ``__c``; custom defaults to ``name.endswith('__c')``; text types default to length 255,
    numbers to precision 18.
    """
    unknown = set(spec) - _FIELD_KEYS
    if unknown:
        msg = f"{where}: unknown field key(s) {sorted(unknown)}; allowed: {sorted(_FIELD_KEYS)}"
        raise OrgFileError(msg)
    if "name" not in spec or "type" not in spec:
        msg = f"{where}: a field needs 'name' and 'type'"
        raise OrgFileError(msg)
    name = str(spec["name"])
    ftype = str(spec["type"]).lower()
    if ftype not in FIELD_TYPES:
        msg = f"{where}: field {name}: unknown type {ftype!r}; allowed: {sorted(FIELD_TYPES)}"
        raise OrgFileError(msg)
    kwargs: dict[str, Any] = {k: v for k, v in spec.items() if k not in ("name", "type", "default")}
    if "default" in spec:
        kwargs["default_value"] = spec["default"]
        kwargs.setdefault("defaulted_on_create", True)
    for key in ("picklist_values", "reference_to"):
        if key in kwargs:
            kwargs[key] = tuple(str(v) for v in kwargs[key])
    kwargs.setdefault("label", name.removesuffix("__c").replace("_", " "))
    kwargs.setdefault("custom", name.endswith("__c") if custom is None else custom)
    if ftype in _TEXT_TYPES and ftype not in ("picklist", "multipicklist"):
        kwargs.setdefault("length", 255)
    if ftype in ("picklist", "multipicklist"):
        kwargs.setdefault("length", 255 if ftype == "picklist" else 4099)
    if ftype in _FLOAT_TYPES:
        kwargs.setdefault("precision", 18)
    if ftype == "int":
        kwargs.setdefault("precision", 9)
    if ftype == "boolean":
        kwargs.setdefault("nillable", False)
        kwargs.setdefault("defaulted_on_create", True)
        kwargs.setdefault("default_value", False)
    if ftype == "reference":
        if not kwargs.get("reference_to"):
            msg = f"{where}: reference field {name} needs reference_to"
            raise OrgFileError(msg)
        kwargs.setdefault("length", 18)
        kwargs.setdefault(
            "relationship_name",
            name.removesuffix("__c") + "__r" if name.endswith("__c") else name.removesuffix("Id"),
        )
    try:
        return FieldDef(name=name, type=ftype, **kwargs)
    except TypeError as exc:
        msg = f"{where}: field {name}: {exc}"
        raise OrgFileError(msg) from exc


def custom_object(
    schema: Schema,
    name: str,
    *,
    label: str | None = None,
    label_plural: str | None = None,
    key_prefix: str | None = None,
    extra_fields: tuple[FieldDef, ...] = (),
) -> ObjectDef:
    """A new custom object with the standard fields every custom object has (Id, Name, audit)."""
    label = label or name.removesuffix("__c").replace("_", " ")
    base = system_fields()
    name_field = FieldDef(
        name="Name",
        label=f"{label} Name",
        type="string",
        length=80,
        name_field=True,
        defaulted_on_create=True,
    )
    return ObjectDef(
        name=name,
        label=label,
        label_plural=label_plural or label + "s",
        key_prefix=key_prefix or schema.next_custom_prefix(),
        custom=name.endswith("__c"),
        fields=(*base[:2], name_field, *base[2:], *extra_fields),
    )


def merge_object(
    schema: Schema, name: str, entry: Mapping[str, Any], extra: tuple[FieldDef, ...]
) -> ObjectDef:
    """Add ``extra`` to the object ``name``, or create it as a custom object from ``entry``.

    ``entry`` is one checked entry of an org file's ``objects`` (its label, key prefix and
    flags apply to a new object only); returns the object as it now is.
    """
    existing = schema.get(name)
    if existing is not None:
        for f in extra:
            schema.add_field(existing.name, f)
        result = schema.get(name)
        assert result is not None  # it existed a moment ago and objects are never removed
        return result
    obj = custom_object(
        schema,
        name,
        label=entry.get("label"),
        label_plural=entry.get("label_plural"),
        key_prefix=entry.get("key_prefix"),
        extra_fields=extra,
    )
    flags: dict[str, Any] = {k: bool(entry[k]) for k in _OBJECT_FLAGS if k in entry}
    obj = replace(obj, **flags)
    schema.add_object(obj)
    return obj


def load_org_yaml(path: str | Path, schema: Schema | None = None) -> Schema:
    """Add the objects and fields described in a YAML org file (docs/emulator-org.md).

    Starts from ``default_schema()`` unless ``schema`` is given; returns the schema.
    """
    path = Path(path)
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(data, dict):
        msg = f"{path}: the top level must be a mapping with keys {sorted(_TOP_KEYS)}"
        raise OrgFileError(msg)
    unknown = set(data) - _TOP_KEYS
    if unknown:
        msg = f"{path}: unknown top-level key(s) {sorted(unknown)}; allowed: {sorted(_TOP_KEYS)}"
        raise OrgFileError(msg)
    schema = schema if schema is not None else default_schema()
    for i, spec in enumerate(data.get("objects") or ()):
        where = f"{path}: objects[{i}]"
        if not isinstance(spec, dict) or "name" not in spec:
            msg = f"{where}: an object needs a 'name'"
            raise OrgFileError(msg)
        bad = set(spec) - OBJECT_KEYS
        if bad:
            msg = f"{where}: unknown object key(s) {sorted(bad)}; allowed: {sorted(OBJECT_KEYS)}"
            raise OrgFileError(msg)
        name = str(spec["name"])
        extra = tuple(
            field_from_mapping(f, where=f"{where} ({name}).fields[{j}]")
            for j, f in enumerate(spec.get("fields") or ())
        )
        merge_object(schema, name, spec, extra)
    for obj_name, field_specs in (data.get("fields") or {}).items():
        target = schema.get(str(obj_name))
        if target is None:
            msg = f"{path}: fields.{obj_name}: no such object (define it under 'objects')"
            raise OrgFileError(msg)
        for j, f in enumerate(field_specs or ()):
            schema.add_field(
                target.name, field_from_mapping(f, where=f"{path}: fields.{obj_name}[{j}]")
            )
    for source, targets in (data.get("lead_convert_mapping") or {}).items():
        target_list = [targets] if isinstance(targets, str) else list(targets)
        for dest in target_list:
            if "." not in str(dest):
                msg = f"{path}: lead_convert_mapping.{source}: target {dest!r} must be Object.Field"
                raise OrgFileError(msg)
        schema.lead_convert_mapping[str(source).removeprefix("Lead.")] = tuple(
            str(t) for t in target_list
        )
    return schema
