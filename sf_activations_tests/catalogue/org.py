"""The emulated org the catalogue runs against: one custom object with every field type we map.

``Catalogue_Item__c`` is what an admin following the product guide would build: a Unique,
case-insensitive External ID (``Ext__c``, the sync key), a Unique, case-sensitive one
(``Code__c``), and one field of each type the engine coerces. One parent Account with
``External_Id__c = 'acme'`` exists for the lookup cases.
"""

from __future__ import annotations

from sf_activations.emulator.org import Org
from sf_activations.emulator.schema import FieldDef, custom_object

OBJECT = "Catalogue_Item__c"
KEY = "Ext__c"
TEXT_LIMIT = 20
"""``Text__c`` is a Text(20): the long-string cases sit exactly at and one past it."""
NOTES_LIMIT = 32000
"""``Notes__c`` is a Long Text Area(32000)."""
TIERS = ("Gold", "Silver", "Bronze")
TAGS = ("Red", "Green", "Blue")
PARENT_KEY = "acme"


def _fields() -> tuple[FieldDef, ...]:
    return (
        FieldDef(
            name=KEY,
            label="Ext",
            type="string",
            length=80,
            external_id=True,
            unique=True,
            case_sensitive=False,
            id_lookup=True,
            custom=True,
        ),
        FieldDef(
            name="Code__c",
            label="Code",
            type="string",
            length=80,
            external_id=True,
            unique=True,
            case_sensitive=True,
            id_lookup=True,
            custom=True,
        ),
        FieldDef(name="Text__c", label="Text", type="string", length=TEXT_LIMIT, custom=True),
        FieldDef(name="Notes__c", label="Notes", type="textarea", length=NOTES_LIMIT, custom=True),
        FieldDef(
            name="Amount__c", label="Amount", type="double", precision=18, scale=2, custom=True
        ),
        FieldDef(name="Count__c", label="Count", type="int", precision=9, custom=True),
        FieldDef(
            name="Active__c",
            label="Active",
            type="boolean",
            nillable=False,
            defaulted_on_create=True,
            default_value=False,
            custom=True,
        ),
        FieldDef(name="Start__c", label="Start", type="date", custom=True),
        FieldDef(name="Seen_At__c", label="Seen At", type="datetime", custom=True),
        FieldDef(
            name="Tier__c",
            label="Tier",
            type="picklist",
            length=255,
            restricted_picklist=True,
            picklist_values=TIERS,
            custom=True,
        ),
        FieldDef(
            name="Color__c",
            label="Color",
            type="picklist",
            length=255,
            picklist_values=("Mauve", "Teal"),
            custom=True,
        ),
        FieldDef(
            name="Tags__c",
            label="Tags",
            type="multipicklist",
            length=4099,
            restricted_picklist=True,
            picklist_values=TAGS,
            custom=True,
        ),
        FieldDef(
            name="Account__c",
            label="Account",
            type="reference",
            length=18,
            reference_to=("Account",),
            relationship_name="Account__r",
            custom=True,
        ),
    )


def install(org: Org) -> str:
    """Add ``Catalogue_Item__c`` to ``org`` and create the parent Account; return its Id."""
    org.schema.add_object(custom_object(org.schema, OBJECT, extra_fields=_fields()))
    return org.create("Account", {"Name": "Acme Inc", "External_Id__c": PARENT_KEY})
