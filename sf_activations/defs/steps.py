"""What one asset run does, as plain functions the thin asset bodies call.

No sync logic lives here: the engine (``sf_activations.sync.run``) does the work; these functions
read the right rows, call it, and translate its result and its errors into Dagster terms.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import dagster as dg

from sf_activations.config.loader import ModelDef, Project
from sf_activations.defs.metadata import (
    preview_metadata,
    rejected_check,
    report_metadata,
    summary_markdown,
)
from sf_activations.defs.progress import BulkProgressLog, attach_bulk_progress
from sf_activations.sync.model import (
    ObjectDescribe,
    SalesforceRequestError,
    SalesforceUnavailable,
)
from sf_activations.sync.source import DuckDBSource
from sf_activations.sync.spec import SyncSpec
from sf_activations.warehouse.base import ModelSqlError, RowFilter, TableNotFound, Warehouse
from sf_activations.warehouse.partition import ALL_PARTITIONS, sync_source

if TYPE_CHECKING:
    from sf_activations.defs.resources import SalesforceResource, StateStoreResource
    from sf_activations.salesforce.client import SalesforceClient
    from sf_activations.sync.state import StateStore

RunContext = dg.AssetExecutionContext | dg.OpExecutionContext
"""The sync asset's context, or the preview op's: both know the run's partition and log."""


def _time_filter(column: str, context: RunContext) -> RowFilter:
    window = context.partition_time_window
    start: datetime = window.start
    end: datetime = window.end
    return RowFilter(column=column, start=start, end=end)


def materialize_model_step(
    context: dg.AssetExecutionContext, model: ModelDef, warehouse: Warehouse
) -> dg.MaterializeResult:
    """Build one model (or one time partition of it) and describe the table it produced."""
    where = None
    if model.time_partitions is not None and context.has_partition_key:
        where = _time_filter(model.time_partitions.column, context)
    try:
        stats = warehouse.materialize_model(model.name, model.sql, where=where)
    except ModelSqlError as exc:
        part = f", partition '{context.partition_key}'" if context.has_partition_key else ""
        raise dg.Failure(
            description=(
                f"{model.path}{part}: the warehouse refused model '{model.name}':\n"
                f"{exc.detail}\nWhat to do: fix the SELECT in {model.path.name} (run it in "
                "`duckdb` on the warehouse file to try it); the table was left as it was."
            ),
            metadata={"sf/model": model.name, "sf/model_file": str(model.path)},
        ) from exc
    schema = dg.TableSchema(columns=[dg.TableColumn(name, dtype) for name, dtype in stats.columns])
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": dg.MetadataValue.int(stats.rows),
            "dagster/column_schema": dg.MetadataValue.table_schema(schema),
            "dagster/table_name": dg.MetadataValue.text(stats.table),
            "sql": dg.MetadataValue.md(f"```sql\n{model.sql.strip()}\n```"),
        }
    )


def read_sync_source(
    context: RunContext, spec: SyncSpec, project: Project, warehouse: Warehouse
) -> tuple[str, DuckDBSource]:
    """The partition key (engine's name) and the model rows that belong to it, as a source
    the engine reads lazily (a narrow fingerprint pass, then only the rows that may differ)."""
    partition = context.partition_key if context.has_partition_key else ALL_PARTITIONS
    window = None
    if spec.partitions.kind == "time":
        if project.time_partitions_of(spec.source_model) is None:
            # The loader rejects this; kept so a bad state fails loudly.
            msg = (
                f"{spec.source_file}, sync '{spec.name}': time-partitioned, but model "
                f"'{spec.source_model}' has no time_partitions. What to do: set "
                f"models.{spec.source_model}.time_partitions in sf_activations.yaml."
            )
            raise dg.Failure(description=msg)
        span = context.partition_time_window
        window = (span.start, span.end)
    try:
        source = sync_source(spec, project, warehouse, partition=partition, window=window)
        columns = list(source.columns())
    except TableNotFound as exc:
        raise _failure(
            spec,
            partition,
            f"its source table '{exc.table}' (model '{spec.source_model}') does not exist in "
            "the warehouse yet.",
            code="SOURCE_NOT_BUILT",
            fix=f"Materialize '{spec.source_model}' first (select it together with the sync, "
            "or materialize the 'models' group); nothing was sent.",
        ) from exc
    _check_columns(spec, columns, partition)
    return partition, source


def _check_columns(spec: SyncSpec, columns: list[str], partition: str) -> None:
    wanted = [("key.source", spec.key.source)] + [
        (f"mappings[{i}].source", m.source) for i, m in enumerate(spec.mappings)
    ]
    missing = [(field, col) for field, col in wanted if col not in columns]
    if missing:
        lines = [
            f"{spec.source_file}, sync '{spec.name}', partition '{partition}', field "
            f"'{field}': column '{col}' is not in model '{spec.source_model}'."
            for field, col in missing
        ]
        raise dg.Failure(
            description="\n".join(lines)
            + f"\nWhat to do: use one of the model's columns ({', '.join(columns)}) "
            "or add the column to the model's SELECT; nothing was sent.",
            metadata={
                "sf/sync": spec.name,
                "sf/missing_columns": dg.MetadataValue.json([c for _, c in missing]),
            },
        )


def _failure(
    spec: SyncSpec,
    partition: str,
    what: str,
    *,
    code: str,
    fix: str,
    extra: Mapping[str, Any] | None = None,
) -> dg.Failure:
    return dg.Failure(
        description=(
            f"sync '{spec.name}' ({spec.source_file}), partition '{partition}', object "
            f"'{spec.sobject}': {what}\nWhat to do: {fix}"
        ),
        metadata={
            "sf/sync": spec.name,
            "sf/partition": partition,
            "sf/object": spec.sobject,
            "sf/error_code": code,
            "sf/fix": fix,
            **(extra or {}),
        },
        allow_retries=code in ("UNAVAILABLE",),
    )


def _store_describe(
    context: RunContext,
    project: Project,
    sobject: str,
    describe: ObjectDescribe | None,
    instance_url: str,
) -> None:
    """Keep the describe this run fetched, so the next definitions load can check against it."""
    from sf_activations.config.snapshot import save_describe, save_missing

    try:
        if describe is None:
            save_missing(project.describe_dir, sobject, "NOT_FOUND", instance_url=instance_url)
        else:
            save_describe(project.describe_dir, describe, instance_url=instance_url)
    except OSError as exc:
        # The snapshot is a convenience for load-time checks; the run itself checks describe
        # live, so a read-only state dir must not fail the sync. Say so instead.
        context.log.warning(
            f"could not store the describe of {sobject} in {project.describe_dir}: {exc}; "
            "load-time checks will use the older snapshot (if any)"
        )


def _other_partitions_over_threshold(
    store: StateStore, spec: SyncSpec, partition: str
) -> dict[str, float]:
    """Other partitions whose share of pending records (from state) exceeds the threshold.

    Dagster shows a partitioned asset's latest check evaluation; without this a healthy bucket
    run would hide a bucket that is over the threshold.
    """
    if spec.partitions.kind == "none":
        return {}
    out: dict[str, float] = {}
    for other in store.partitions(spec.name):
        if other == partition:
            continue
        counts = store.counts(spec.name, other)
        total = counts["synced"] + counts["pending"]
        share = counts["pending"] / total if total else 0.0
        if share > spec.max_rejected_fraction:
            out[other] = share
    return out


def _login_fix(project: Project, code: str) -> str:
    """What to check after a refused login: the guide's advice and the variables involved."""
    from sf_activations.config.loader import PROJECT_FILE, credential_sources
    from sf_activations.sync.report import ERROR_GUIDE

    sf = project.config.salesforce
    envs = [env for _, env in credential_sources(sf).values() if env is not None]
    where = (
        f"the environment variables {', '.join(envs)} (named in {PROJECT_FILE})"
        if envs
        else f"the salesforce section of {PROJECT_FILE}"
    )
    advice = ERROR_GUIDE.get(code, ("", ""))[1]
    return (
        advice + " " if advice else ""
    ) + f"Check {where} for auth '{sf.auth}'; nothing was sent."


def _progress_logger(context: RunContext, spec: SyncSpec, partition: str) -> Callable[[str], None]:
    """The engine's progress lines into the run log, tagged with the sync and partition."""
    tag = spec.name if partition == ALL_PARTITIONS else f"{spec.name}[{partition}]"

    def say(line: str) -> None:
        # The engine names the sync itself in its phase lines, not in its per-job lines.
        context.log.info(line if line.startswith(spec.name) else f"{tag}: {line}")

    return say


def _check_fit(
    context: RunContext,
    spec: SyncSpec,
    project: Project,
    client: SalesforceClient,
    partition: str,
    *,
    keep_describe: bool,
) -> None:
    """Describe the sync's object and check the sync against it before anything else, failing
    the run with the object and the fields named. ``keep_describe`` stores what was read in the
    project's describe snapshot (a real run does; a preview writes nothing)."""
    from sf_activations.config.snapshot import describe_problems

    try:
        describe = client.describe(spec.sobject)
    except SalesforceRequestError as exc:
        if exc.code == "NOT_FOUND" and keep_describe:
            _store_describe(context, project, spec.sobject, None, client.instance_url)
        what = (
            f"Salesforce has no object '{spec.sobject}' that the API user can see."
            if exc.code == "NOT_FOUND"
            else f"describe of '{spec.sobject}' refused ({exc.code}: {exc.message})."
        )
        raise _failure(
            spec,
            partition,
            what,
            code=exc.code,
            fix=f"Check `object:` in {Path(spec.source_file).name} (the API name, e.g. "
            "Account or Invoice__c; custom objects end in __c) and that the API user's "
            "profile or permission sets grant access to the object; nothing was sent.",
        ) from exc
    if keep_describe:
        _store_describe(context, project, spec.sobject, describe, client.instance_url)
    problems = describe_problems(
        spec,
        describe,
        fix=f"Edit {Path(spec.source_file).name}; nothing was sent.",
    )
    if problems:
        raise dg.Failure(
            description=(
                f"sync '{spec.name}', partition '{partition}', object '{spec.sobject}': "
                f"the sync does not fit {spec.sobject} as Salesforce describes it:\n- "
                + "\n- ".join(str(p) for p in problems)
            ),
            metadata={
                "sf/sync": spec.name,
                "sf/partition": partition,
                "sf/object": spec.sobject,
                "sf/config_problems": dg.MetadataValue.json([str(p) for p in problems]),
            },
        )


@contextmanager
def _engine_failures(spec: SyncSpec, project: Project, partition: str) -> Iterator[None]:
    """The engine's and Salesforce's errors as ``dg.Failure``s that name the sync, the
    partition and the object and say what to do (the same for a run and a preview)."""
    from sf_activations.salesforce.errors import SalesforceAuthError
    from sf_activations.sync.mapping import SyncConfigError
    from sf_activations.sync.plan import BehaviorNotSupported, DeleteGuardTripped
    from sf_activations.sync.report import ERROR_GUIDE

    try:
        yield
    except SyncConfigError as exc:
        raise _failure(
            spec,
            partition,
            f"the sync does not fit the object:\n{exc}",
            code="CONFIG",
            fix=f"Fix {spec.source_file} as the lines above say; nothing was sent.",
        ) from exc
    except DeleteGuardTripped as exc:
        raise _failure(
            spec,
            partition,
            exc.finding,
            code="DELETE_GUARD",
            fix=(
                f"Check the model {spec.source_model!r} first. If the rows are meant to go, "
                f"raise max_delete_fraction in {spec.source_file} (1 for no limit) and re-run."
            ),
        ) from exc
    except BehaviorNotSupported as exc:
        raise _failure(
            spec,
            partition,
            str(exc),
            code="BEHAVIOR_NOT_SUPPORTED",
            fix=f"Use one of the eight behaviors in {spec.source_file}.",
        ) from exc
    except SalesforceAuthError as exc:
        code = str(getattr(exc, "code", "AUTH"))
        raise _failure(
            spec,
            partition,
            f"login refused: {exc}",
            code=code,
            fix=_login_fix(project, code),
        ) from exc
    except SalesforceUnavailable as exc:
        raise _failure(
            spec,
            partition,
            f"Salesforce stayed unavailable after retries: {exc}",
            code="UNAVAILABLE",
            fix="Nothing is lost: records not confirmed stay pending. Re-run the partition later.",
        ) from exc
    except SalesforceRequestError as exc:
        cause_fix = ERROR_GUIDE.get(exc.code)
        raise _failure(
            spec,
            partition,
            f"Salesforce refused the request ({exc.code}: {exc.message}).",
            code=exc.code,
            fix=cause_fix[1] if cause_fix else "Fix the sync configuration and re-run.",
        ) from exc


@contextmanager
def _engine_session(  # noqa: PLR0917 - the run's context and its resources, one call per step
    context: RunContext,
    spec: SyncSpec,
    project: Project,
    partition: str,
    salesforce: SalesforceResource,
    state: StateStoreResource,
    *,
    keep_describe: bool,
) -> Iterator[tuple[SalesforceClient, StateStore, Callable[[str], None]]]:
    """A logged-in client, the state store and a progress logger for one partition, after the
    sync was checked against its object's describe; engine errors become ``dg.Failure``s.
    Bulk jobs (a run's writes, a lookup's query) report their progress to the run log."""
    with (
        _engine_failures(spec, project, partition),
        salesforce.client() as client,
        state.store() as store,
    ):
        _check_fit(context, spec, project, client, partition, keep_describe=keep_describe)
        say = _progress_logger(context, spec, partition)
        attach_bulk_progress(client, BulkProgressLog(say, every_s=salesforce.bulk_progress_every_s))
        yield client, store, say


def run_sync_step(
    context: dg.AssetExecutionContext,
    spec: SyncSpec,
    project: Project,
    *,
    warehouse: Warehouse,
    salesforce: SalesforceResource,
    state: StateStoreResource,
) -> dg.MaterializeResult:
    """Run one partition of a sync through the engine and report it as metadata + check."""
    from sf_activations.sync.report import ERROR_GUIDE
    from sf_activations.sync.run import run_sync_partition

    partition, source = read_sync_source(context, spec, project, warehouse)
    with _engine_session(
        context, spec, project, partition, salesforce, state, keep_describe=True
    ) as (client, store, say):
        report = run_sync_partition(spec, source, client, store, partition=partition, progress=say)
        others = _other_partitions_over_threshold(store, spec, partition)
    context.log.info(summary_markdown(report))
    return dg.MaterializeResult(
        metadata=report_metadata(report, ERROR_GUIDE),
        check_results=[rejected_check(report, spec, other_partitions=others)],
    )


def preview_sync_step(
    context: dg.OpExecutionContext,
    spec: SyncSpec,
    project: Project,
    *,
    warehouse: Warehouse,
    salesforce: SalesforceResource,
    state: StateStoreResource,
    rows: int,
) -> dg.Output[None]:
    """What the next run of one partition of a sync would send, without sending it: the
    engine's preview (state only read, Salesforce only queried) as run-log lines and output
    metadata. Nothing is materialized, so the sync asset's history is left as it was."""
    from sf_activations.sync.preview import preview_sync_partition

    partition, source = read_sync_source(context, spec, project, warehouse)
    with _engine_session(
        context, spec, project, partition, salesforce, state, keep_describe=False
    ) as (client, store, say):
        preview = preview_sync_partition(
            spec, source, client, store, partition=partition, sample=rows, progress=say
        )
        calls = dict(client.api_calls())
    for line in preview.lines():
        context.log.info(line)
    used = ", ".join(f"{k} {v}" for k, v in sorted(calls.items()))
    context.log.info(f"  (this preview used {used or 'no API call'}; nothing was sent)")
    return dg.Output(None, metadata=preview_metadata(preview, calls))
