"""Salesforce's error shapes, in one place, so every surface of the emulator answers alike."""

from __future__ import annotations

# Codes that only come out of saving or deleting a record (a DML save result). Real REST
# bodies of those errors carry ``"fields"`` even when it is empty: the recorded real
# ENTITY_IS_DELETED body is ``[{"message":"entity is deleted","errorCode":"ENTITY_IS_DELETED",
# "fields":[]}]`` (salesforce-api.md §2.4). Request-level errors (NOT_FOUND, INVALID_SESSION_ID,
# MALFORMED_QUERY, ...) leave the key out, as their recorded bodies do. Only ENTITY_IS_DELETED
# is verified; the other codes follow the same save-result shape (UNVERIFIED).
DML_CODES: frozenset[str] = frozenset(
    {
        "ENTITY_IS_DELETED",
        "CANNOT_INSERT_UPDATE_ACTIVATE_ENTITY",
        "CANNOT_UPDATE_CONVERTED_LEAD",
        "DUPLICATE_VALUE",
        "DUPLICATES_DETECTED",
        "FIELD_CUSTOM_VALIDATION_EXCEPTION",
        "FIELD_INTEGRITY_EXCEPTION",
        "INVALID_CROSS_REFERENCE_KEY",
        "INVALID_EMAIL_ADDRESS",
        "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
        "INVALID_TYPE_ON_FIELD_IN_RECORD",
        "STRING_TOO_LONG",
        "UNABLE_TO_LOCK_ROW",
    }
)


class SalesforceError(Exception):
    """An error Salesforce would answer with: a code, a message and the fields it concerns.

    The same error is rendered three ways: a REST error array item (``errorCode``), a
    collection/SOAP item (``statusCode``) and a Bulk ``sf__Error`` cell
    (``CODE:message:fields --``). ``rest_fields`` forces the REST body's ``"fields"`` key on
    (True) or off (False); by default it is there when there are fields or the code is a
    save-result code (``DML_CODES``).
    """

    def __init__(
        self,
        code: str,
        message: str,
        fields: list[str] | tuple[str, ...] = (),
        *,
        status: int = 400,
        rest_fields: bool | None = None,
    ) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.fields = list(fields)
        self.status = status
        self.rest_fields = rest_fields

    def rest_body(self) -> list[dict[str, object]]:
        """The JSON array body of a single-record REST error response."""
        item: dict[str, object] = {"message": self.message, "errorCode": self.code}
        with_fields = self.rest_fields
        if with_fields is None:
            with_fields = bool(self.fields) or self.code in DML_CODES
        if with_fields:
            item["fields"] = list(self.fields)
        return [item]

    def item_error(self) -> dict[str, object]:
        """One entry of ``errors`` in an sObject Collections result item."""
        return {"statusCode": self.code, "message": self.message, "fields": list(self.fields)}

    def bulk_cell(self) -> str:
        """The ``sf__Error`` cell of a Bulk API 2.0 failedResults row (``CODE:msg:--`` without fields)."""
        fields = ",".join(self.fields)
        return (
            f"{self.code}:{self.message}:{fields} --"
            if fields
            else f"{self.code}:{self.message}:--"
        )


class MoreThanOneRecord(SalesforceError):
    """An external id matched several records (REST answers 300 with their URLs)."""

    def __init__(self, sobject: str, record_ids: list[str]) -> None:
        super().__init__(
            "DUPLICATE_EXTERNAL_ID",
            "A user-specified external ID matches more than one record during an upsert.",
            status=300,
        )
        self.sobject = sobject
        self.record_ids = record_ids
