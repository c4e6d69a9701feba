"""Salesforce's error shapes, in one place, so every surface of the emulator answers alike."""

from __future__ import annotations


class SalesforceError(Exception):
    """An error Salesforce would answer with: a code, a message and the fields it concerns.

    The same error is rendered three ways: a REST error array item (``errorCode``), a
    collection/SOAP item (``statusCode``) and a Bulk ``sf__Error`` cell
    (``CODE:message:fields --``).
    """

    def __init__(
        self,
        code: str,
        message: str,
        fields: list[str] | tuple[str, ...] = (),
        *,
        status: int = 400,
    ) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.fields = list(fields)
        self.status = status

    def rest_body(self) -> list[dict[str, object]]:
        """The JSON array body of a single-record REST error response."""
        item: dict[str, object] = {"message": self.message, "errorCode": self.code}
        if self.fields:
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
