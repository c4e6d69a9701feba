"""What one run of a sync partition did, and what each error means for the person fixing it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

SAMPLE_SIZE = 20


@dataclass(frozen=True)
class SyncReport:
    """Counts, samples and costs of one run of one (sync, partition)."""

    sync: str
    partition: str
    sobject: str
    records_read: int
    invalid: int  # set aside by validation before anything was sent
    unchanged: int
    created: int
    updated: int
    deleted: int
    rejected: int  # sent and refused by Salesforce (or not confirmed): pending in state
    skipped: int  # invalid + rejected
    pending_retries: int  # records in state still pending after this run
    error_counts: Mapping[str, int] = field(default_factory=dict)
    rejected_sample: Sequence[Mapping[str, str]] = ()  # key, code, message
    invalid_sample: Sequence[Mapping[str, str]] = ()  # key, reason, column, value
    api_calls: Mapping[str, int] = field(default_factory=dict)
    bulk_job_ids: Sequence[str] = ()
    phase_seconds: Mapping[str, float] = field(default_factory=dict)
    sf_processing_ms: int = 0
    apex_ms: int = 0
    reconciled: int = 0  # records confirmed from jobs a previous run left unfinished
    held: int = 0  # pending records not retried because they reached max_attempts
    # Rows read in full and mapped; the others matched the source fingerprint of their
    # confirmed record and were counted unchanged without being read (prefilter.py).
    rows_compared: int = 0

    @property
    def sent(self) -> int:
        """Records this run sent to Salesforce (confirmed or refused)."""
        return self.created + self.updated + self.rejected

    @property
    def rejected_fraction(self) -> float:
        """Share of the records the run tried to write that were skipped (invalid or rejected)."""
        attempted = self.created + self.updated + self.deleted + self.skipped
        return self.skipped / attempted if attempted else 0.0

    def summary(self) -> str:
        """One line for logs."""
        return (
            f"{self.sync}[{self.partition}] -> {self.sobject}: read {self.records_read}, "
            f"created {self.created}, updated {self.updated}, unchanged {self.unchanged}, "
            f"invalid {self.invalid}, rejected {self.rejected}, pending {self.pending_retries}"
        )


ERROR_GUIDE: Mapping[str, tuple[str, str]] = {
    # Salesforce's own codes
    "DUPLICATES_DETECTED": (
        "A duplicate rule in Salesforce matched the record to an existing Lead, Contact or Account.",
        "Sync to the existing record instead (a Lead-or-Contact sync, or match on its key), or relax the duplicate rule for the sync user.",
    ),
    "UNABLE_TO_LOCK_ROW": (
        "Another transaction (a trigger, flow or a parallel job) held a lock on the record or its parent.",
        "Usually passes on the next run; if it keeps coming back, lower the sync's batch_size or stop other jobs writing the same parents.",
    ),
    "CANNOT_INSERT_UPDATE_ACTIVATE_ENTITY": (
        "A trigger, flow or validation on the object failed (often a governor limit such as too many SOQL queries or CPU time).",
        "Read the trigger name in the message and make it handle batches (no queries in loops), or lower the sync's batch_size.",
    ),
    "INVALID_CROSS_REFERENCE_KEY": (
        "A lookup points at a Salesforce Id that does not exist in this org (or is of the wrong object).",
        "Check the Id column comes from this org (sandbox Ids differ from production) or map the lookup by an External ID instead.",
    ),
    "OAUTH_APP_BLOCKED": (
        "The org's admin blocked the connected app the sync logs in with.",
        "Unblock the app under Setup > Connected Apps OAuth Usage and give its user API access to the synced objects.",
    ),
    "REQUIRED_FIELD_MISSING": (
        "Salesforce needs a value in a required field to create the record.",
        "Map a column to the field named in the message and make sure the model never leaves it null.",
    ),
    "STRING_TOO_LONG": (
        "A text value is longer than the Salesforce field allows.",
        "Truncate the column in the model, or make the field longer in Salesforce.",
    ),
    "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST": (
        "The value is not one of the restricted picklist's active values.",
        "Map the model's values to the picklist's API values, or add the value to the picklist.",
    ),
    "DUPLICATE_VALUE": (
        "A unique field already holds this value on another record.",
        "Find the record named in the message; merge it or change the model so the value is unique.",
    ),
    "DUPLICATE_EXTERNAL_ID": (
        "The key matches more than one Salesforce record because the External ID field is not Unique.",
        "Merge or fix the duplicated records in Salesforce, then mark the field Unique.",
    ),
    "INVALID_FIELD": (
        "Salesforce does not know a field or cannot read a value as the field's type (or a lookup's key was not found).",
        "Check the mapping's field names and the column's values; for a lookup, sync the parent record first.",
    ),
    "INVALID_FIELD_FOR_INSERT_UPDATE": (
        "The field is read-only for the sync user (a system, formula or permission-restricted field).",
        "Remove the mapping, or grant the sync user edit access to the field.",
    ),
    "MALFORMED_ID": (
        "A value sent as a Salesforce Id is not a valid 15- or 18-character Id of the right object.",
        "Check the column holds Salesforce Ids of the looked-up object, or map the lookup by an External ID.",
    ),
    "ENTITY_IS_DELETED": (
        "The record was deleted in Salesforce (it is in the recycle bin).",
        "Restore it from the recycle bin, or remove it from the model; the sync will not recreate a deleted Id.",
    ),
    "CANNOT_UPDATE_CONVERTED_LEAD": (
        "The Lead was converted to a Contact or Account and can no longer be updated.",
        "Use a lead_or_contact sync with the key mapped across conversion (Map Lead Fields).",
    ),
    "REQUEST_LIMIT_EXCEEDED": (
        "The org ran out of API calls for the rolling 24 hours (or too many long requests ran at once).",
        "Wait for the limit to recover; run syncs less often or with larger batches; records stay pending and retry.",
    ),
    "INVALID_TYPE_ON_FIELD_IN_RECORD": (
        "A value is not of the field's type.",
        "Cast the column in the model to the field's type (numbers, dates as YYYY-MM-DD, booleans true/false).",
    ),
    "ENTITY_FAILED_IFLASTMODIFIED_ON_UPDATE": (
        "Someone changed the record in Salesforce while the sync was writing it.",
        "Nothing to do: the record stays pending and is retried on the next run.",
    ),
    # the engine's own codes
    "SALESFORCE_UNAVAILABLE": (
        "Salesforce kept failing (server errors, timeouts or limits) beyond the retry budget.",
        "Nothing to fix in the data: the records stay pending and the next run retries them.",
    ),
    "BULK_JOB_FAILED": (
        "Salesforce failed or aborted the whole Bulk job (often a bad CSV header).",
        "Read the job's error message; check the mappings against the object's fields.",
    ),
    "UNPROCESSED": (
        "Salesforce did not process the record (the job stopped before reaching it).",
        "Nothing to fix: the record stays pending and the next run sends it again.",
    ),
    "NO_MATCHING_RECORD": (
        "Update Only by a field: no record has the key's value in that field, and Update Only never creates.",
        "Create the record in Salesforce or correct the value; the key is looked up again every run.",
    ),
    "AMBIGUOUS_MATCH": (
        "Update Only by a field: several records have the key's value, or two keys found one record.",
        "Merge the duplicates in Salesforce (or dedupe the model), or key the sync on a Unique External ID.",
    ),
    "RESULT_MISSING": (
        "The job finished without reporting this record.",
        "Nothing to fix: the record stays pending and the next run sends it again.",
    ),
    "INVALID_NULL_KEY": (
        "The key column is null, empty or only blanks on the row, so it cannot be matched to a record.",
        "Filter such rows out of the model or fill the key.",
    ),
    "INVALID_DUPLICATE_KEY": (
        "Several rows of the model share the key; the sync cannot tell which one is right, so it sends none.",
        "Deduplicate the model on the key (e.g. keep the latest row per key).",
    ),
    "INVALID_STRING_TOO_LONG": (
        "A text value is longer than the Salesforce field's length.",
        "Truncate the column in the model, or make the field longer in Salesforce.",
    ),
    "INVALID_PICKLIST_VALUE": (
        "A value is not one of the restricted picklist's active values.",
        "Map the model's values to the picklist's API values, or add the value to the picklist.",
    ),
    "INVALID_TYPE": (
        "A value cannot be read as the field's type (number, boolean, date or datetime); NaN and infinities are no numbers.",
        "Cast the column in the model: numbers, dates as YYYY-MM-DD, datetimes ISO 8601, booleans true/false.",
    ),
    "INVALID_EMAIL": (
        "A value mapped to an email field is not an email address.",
        "Clean or null the column in the model.",
    ),
    "INVALID_ID": (
        "A value mapped to an Id or lookup field is not a 15- or 18-character Salesforce Id.",
        "Send Salesforce Ids in the column, or configure the mapping as a lookup by External ID.",
    ),
    "INVALID_REQUIRED_MISSING": (
        "The record is new and a field required to create it is null.",
        "Fill the column in the model for new records (or create them another way).",
    ),
    "INVALID_BULK_NULL_MARKER": (
        "A Create Only sync has a value that is the literal text '#N/A', which a Bulk API "
        "insert would store as an empty field.",
        "Change the value in the model, or use update_or_create, which sends such records "
        "through REST where the text is kept.",
    ),
}
"""Error code -> (what causes it, what to do), for reports, metadata and the CLI."""


def explain(code: str) -> tuple[str, str]:
    """The guide entry for ``code``, or a generic one."""
    return ERROR_GUIDE.get(
        code,
        (
            "Salesforce refused the record.",
            "Read the message; fix the value in the model or the object's configuration.",
        ),
    )
