"""A ``SyncReport`` as Dagster metadata, under stable keys so the UI plots them over runs."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import dagster as dg

if TYPE_CHECKING:
    from sf_activations.sync.preview import SyncPreview
    from sf_activations.sync.report import SyncReport
    from sf_activations.sync.spec import SyncSpec

# Counts, in the order the UI shows them. Every run emits every key (zeros included), so the
# plots have no gaps.
COUNT_KEYS: tuple[tuple[str, str], ...] = (
    ("sf/records_read", "records_read"),
    ("sf/rows_compared", "rows_compared"),
    ("sf/invalid", "invalid"),
    ("sf/unchanged", "unchanged"),
    ("sf/created", "created"),
    ("sf/updated", "updated"),
    ("sf/deleted", "deleted"),
    ("sf/rejected", "rejected"),
    ("sf/skipped", "skipped"),
    ("sf/pending_retries", "pending_retries"),
)
# A preview's counts (``SyncPreview`` attributes): what the next run would find.
PREVIEW_COUNT_KEYS: tuple[tuple[str, str], ...] = (
    ("sf/preview_records_read", "records_read"),
    ("sf/preview_rows_compared", "rows_compared"),
    ("sf/preview_new", "new"),
    ("sf/preview_changed", "changed"),
    ("sf/preview_retry", "retry"),
    ("sf/preview_unchanged", "unchanged"),
    ("sf/preview_invalid", "invalid"),
    ("sf/preview_gone", "gone"),
    ("sf/preview_left_alone", "left_alone"),
    ("sf/preview_settled", "settled"),
    ("sf/preview_open_jobs", "open_jobs"),
)
PHASES: tuple[str, ...] = ("reconcile", "read", "map", "diff", "plan", "execute", "commit")
CHECK_NAME = "rejected_records_within_threshold"

_ERROR_SCHEMA = dg.TableSchema(
    columns=[
        dg.TableColumn("code", "string"),
        dg.TableColumn("count", "int"),
        dg.TableColumn("cause", "string"),
        dg.TableColumn("fix", "string"),
    ]
)
_REJECTED_SCHEMA = dg.TableSchema(
    columns=[
        dg.TableColumn("key", "string"),
        dg.TableColumn("code", "string"),
        dg.TableColumn("message", "string"),
    ]
)
_INVALID_SCHEMA = dg.TableSchema(
    columns=[
        dg.TableColumn("key", "string"),
        dg.TableColumn("reason", "string"),
        dg.TableColumn("column", "string"),
        dg.TableColumn("value", "string"),
    ]
)


def _text(value: Any, limit: int = 300) -> str:
    # Table cells must be plain scalars (no Decimal, no None); long values are cut for the UI.
    text = "" if value is None else str(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def error_table(
    error_counts: Mapping[str, int], guide: Mapping[str, tuple[str, str]]
) -> dg.TableMetadataValue:
    """Error codes with counts (most frequent first), each with our one-line cause and fix."""
    records = []
    for code, count in sorted(error_counts.items(), key=lambda kv: (-kv[1], kv[0])):
        cause, fix = guide.get(code, ("", ""))
        records.append(
            dg.TableRecord({"code": code, "count": int(count), "cause": cause, "fix": fix})
        )
    return dg.MetadataValue.table(records=records, schema=_ERROR_SCHEMA)


def _sample_table(
    rows: Sequence[Mapping[str, Any]], schema: dg.TableSchema
) -> dg.TableMetadataValue:
    names = [c.name for c in schema.columns]
    records = [dg.TableRecord({n: _text(row.get(n)) for n in names}) for row in rows]
    return dg.MetadataValue.table(records=records, schema=schema)


def report_metadata(
    report: SyncReport, guide: Mapping[str, tuple[str, str]] | None = None
) -> dict[str, dg.MetadataValue]:
    """Every fact of one partition's run, as metadata (values taken from the real result)."""
    if guide is None:
        from sf_activations.sync.report import ERROR_GUIDE

        guide = ERROR_GUIDE
    md: dict[str, dg.MetadataValue] = {
        "sf/object": dg.MetadataValue.text(report.sobject),
        "sf/partition": dg.MetadataValue.text(report.partition),
    }
    for key, attr in COUNT_KEYS:
        md[key] = dg.MetadataValue.int(int(getattr(report, attr)))
    md["sf/rejected_fraction"] = dg.MetadataValue.float(skipped_share(report))
    md["sf/error_codes"] = error_table(report.error_counts, guide)
    md["sf/rejected_sample"] = _sample_table(report.rejected_sample, _REJECTED_SCHEMA)
    md["sf/invalid_sample"] = _sample_table(report.invalid_sample, _INVALID_SCHEMA)
    calls = {str(k): int(v) for k, v in report.api_calls.items()}
    md["sf/api_calls"] = dg.MetadataValue.json(calls)
    md["sf/api_calls_total"] = dg.MetadataValue.int(sum(calls.values()))
    md["sf/bulk_job_ids"] = dg.MetadataValue.json(list(report.bulk_job_ids))
    for phase in PHASES:
        md[f"sf/seconds_{phase}"] = dg.MetadataValue.float(
            round(float(report.phase_seconds.get(phase, 0.0)), 4)
        )
    md["sf/seconds_total"] = dg.MetadataValue.float(
        round(float(sum(report.phase_seconds.values())), 4)
    )
    md["sf/salesforce_processing_ms"] = dg.MetadataValue.int(int(report.sf_processing_ms))
    md["sf/apex_ms"] = dg.MetadataValue.int(int(report.apex_ms))
    return md


def preview_metadata(
    preview: SyncPreview, api_calls: Mapping[str, int]
) -> dict[str, dg.MetadataValue]:
    """A preview's counts, planned writes and samples as metadata; ``api_calls`` are the calls
    the preview run made (login and describe included), by kind."""
    md: dict[str, dg.MetadataValue] = {
        "sf/object": dg.MetadataValue.text(preview.sobject),
        "sf/partition": dg.MetadataValue.text(preview.partition),
    }
    # What would be sent first: the run's event list shows the first few entries unfolded.
    md["sf/preview_writes"] = dg.MetadataValue.md(writes_markdown(preview))
    md["sf/preview_estimated_calls"] = dg.MetadataValue.int(int(preview.estimated_calls))
    for key, attr in PREVIEW_COUNT_KEYS:
        md[key] = dg.MetadataValue.int(int(getattr(preview, attr)))
    md["sf/preview_unmatched"] = dg.MetadataValue.json(
        {str(k): int(v) for k, v in preview.unmatched.items()}
    )
    md["sf/preview_invalid_sample"] = _sample_table(preview.invalid_sample, _INVALID_SCHEMA)
    md["sf/preview_api_calls"] = dg.MetadataValue.json(
        {str(k): int(v) for k, v in sorted(api_calls.items())}
    )
    return md


def writes_markdown(preview: SyncPreview) -> str:
    """The planned writes as a Markdown table (one row per batch), or says there are none."""
    if not preview.writes:
        return "Nothing to send."
    lines = [
        "| object | operation | via | records | API calls (about) | columns |",
        "|---|---|---|---:|---:|---|",
    ]
    lines += [
        f"| {w.sobject} | {w.operation} | {w.transport} | {w.records} | {w.api_calls} | "
        f"{', '.join(f'`{h}`' for h in w.headers)} |"
        for w in preview.writes
    ]
    return "\n".join(lines)


def skipped_share(report: SyncReport) -> float:
    """Records that did not reach Salesforce (invalid + rejected) as a share of the records read.

    Measured against what the model holds, not against what this run happened to send: a
    re-run that only retries the same rejects must not look worse than the first run.
    """
    return report.skipped / report.records_read if report.records_read else 0.0


def rejected_check(
    report: SyncReport,
    spec: SyncSpec,
    *,
    other_partitions: Mapping[str, float] | None = None,
) -> dg.AssetCheckResult:
    """Fails when the share of skipped records (invalid + rejected) exceeds the sync's threshold.

    ``other_partitions`` (partition -> share of pending records, from state) are the sync's
    other partitions over the threshold: they fail this evaluation too, because Dagster shows
    a partitioned asset's latest evaluation and a healthy bucket must not hide a failing one.
    """
    fraction = skipped_share(report)
    others = dict(sorted((other_partitions or {}).items()))
    this_passed = fraction <= spec.max_rejected_fraction
    passed = this_passed and not others
    top = sorted(report.error_counts.items(), key=lambda kv: (-kv[1], kv[0]))[:3]
    description = (
        f"{spec.sobject}, partition '{report.partition}': {report.skipped} of "
        f"{report.records_read} records skipped ({report.invalid} invalid, {report.rejected} "
        f"rejected): {fraction:.1%}; threshold {spec.max_rejected_fraction:.1%}"
    )
    if not this_passed:
        codes = ", ".join(f"{code} ({count})" for code, count in top)
        description += f". Most frequent: {codes}"
    if others:
        listed = ", ".join(f"'{p}' ({share:.1%})" for p, share in others.items())
        description += f". Other partitions over the threshold: {listed}"
    if not passed:
        description += (
            ". What to do: see the error codes table and the samples in each failing "
            "partition's materialization; fix the data in the model (the next run sends "
            "the fixed records and retries Salesforce's rejects), or raise "
            f"max_rejected_fraction in {Path(spec.source_file).name} if these are expected."
        )
    return dg.AssetCheckResult(
        check_name=CHECK_NAME,
        passed=passed,
        severity=dg.AssetCheckSeverity.ERROR,
        description=description,
        metadata={
            "sf/skipped": dg.MetadataValue.int(int(report.skipped)),
            "sf/rejected": dg.MetadataValue.int(int(report.rejected)),
            "sf/rejected_fraction": dg.MetadataValue.float(fraction),
            "sf/max_rejected_fraction": dg.MetadataValue.float(float(spec.max_rejected_fraction)),
            "sf/top_errors": dg.MetadataValue.json({k: int(v) for k, v in top}),
            "sf/partitions_over_threshold": dg.MetadataValue.json(
                ([report.partition] if not this_passed else []) + list(others)
            ),
        },
    )


def summary_markdown(report: SyncReport) -> str:
    """A short human summary for the materialization's description."""
    return (
        f"**{report.sobject}** partition `{report.partition}`: read {report.records_read}, "
        f"created {report.created}, updated {report.updated}, unchanged {report.unchanged}, "
        f"invalid {report.invalid}, rejected {report.rejected}, pending {report.pending_retries}"
    )
