"""The emulated org's metadata: objects, fields and their describe() JSON.

Definitions are frozen dataclasses; a ``Schema`` is the mutable catalogue of them (the admin API
adds objects and fields at run time). Names are looked up case-insensitively, as Salesforce does.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

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
        """The field's entry in describe()'s ``fields`` array."""
        raise NotImplementedError


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

    def field(self, name: str) -> FieldDef | None:
        """The field called ``name`` (case-insensitive), or None."""
        lowered = name.lower()
        for f in self.fields:
            if f.name.lower() == lowered:
                return f
        return None

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


class Schema:
    """The set of objects in an org, looked up case-insensitively (thread-safe)."""

    def __init__(self, objects: list[ObjectDef] | None = None) -> None:
        self._objects: dict[str, ObjectDef] = {}
        self._lock = threading.RLock()
        for obj in objects or ():
            self.add_object(obj)

    def get(self, name: str) -> ObjectDef | None:
        """The object called ``name`` (case-insensitive), or None."""
        return self._objects.get(name.lower())

    def objects(self) -> list[ObjectDef]:
        """All objects, in the order they were added."""
        return list(self._objects.values())

    def add_object(self, obj: ObjectDef) -> None:
        """Add (or replace) an object definition."""
        with self._lock:
            self._objects[obj.name.lower()] = obj

    def add_field(self, object_name: str, field: FieldDef) -> None:
        """Add (or replace) one field of an existing object."""
        with self._lock:
            obj = self.get(object_name)
            if obj is None:
                msg = f"no object {object_name!r} in the schema"
                raise KeyError(msg)
            self._objects[obj.name.lower()] = obj.with_field(field)


def default_schema() -> Schema:
    """A schema like a fresh Developer Edition org, plus ``External_Id__c`` on Account/Contact/Lead."""
    raise NotImplementedError


def load_org_yaml(path: str | Path, schema: Schema | None = None) -> Schema:
    """Add the objects and fields described in a YAML org file (docs/emulator-org.md)."""
    raise NotImplementedError
