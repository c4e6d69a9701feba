"""``sf-activations preview``: the sync tester. What the next run of a sync would send.

It loads the project, logs in to Salesforce, reads the sync's model and runs the engine's
preview (``sync.preview``): state is only read and Salesforce only queried, so nothing is sent
and nothing is remembered.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import datetime
from typing import Any

from sf_activations.demo_project import DEMO_PROJECT_DIR

ENV_PROJECT = "SF_ACTIVATIONS_PROJECT"


def preview_project(
    project_dir: str | os.PathLike[str],
    sync: str,
    *,
    partition: str | None = None,
    rows: int = 5,
    say: Callable[[str], None] = print,
) -> int:
    """Print the preview of ``sync`` (every hash bucket when ``partition`` is None); the exit
    code: 0, or 1 when the project, the login, the model or the sync's fit stops it."""
    from sf_activations.config import PROJECT_FILE, ConfigError, load_project, resolve_credentials
    from sf_activations.salesforce.connection import connect
    from sf_activations.salesforce.errors import SalesforceAuthError
    from sf_activations.sync.mapping import SyncConfigError
    from sf_activations.sync.model import SalesforceRequestError, SalesforceUnavailable
    from sf_activations.sync.partitions import bucket_partition_keys
    from sf_activations.sync.plan import DeleteGuardTripped
    from sf_activations.sync.preview import preview_sync_partition
    from sf_activations.sync.state import StateStore
    from sf_activations.warehouse.base import TableNotFound
    from sf_activations.warehouse.duckdb import DuckDBWarehouse
    from sf_activations.warehouse.partition import ALL_PARTITIONS, sync_source

    try:
        project = load_project(project_dir)
        spec = project.sync(sync)
        creds = resolve_credentials(
            project.config.salesforce, file=str(project.root / PROJECT_FILE)
        )
    except ConfigError as exc:
        for problem in exc.problems:
            say(f"FAIL  {problem}")
        return 1
    except KeyError as exc:
        say(f"FAIL  {exc.args[0]}")
        return 1
    if partition is not None:
        keys = [partition]
    elif spec.partitions.kind == "hash":
        keys = bucket_partition_keys(spec.partitions.buckets)
    elif spec.partitions.kind == "time":
        say(
            f"FAIL  sync '{spec.name}' ({spec.source_file}) is time-partitioned: name one "
            "partition with --partition (e.g. 2026-11-01 for a daily model)"
        )
        return 1
    else:
        keys = [ALL_PARTITIONS]
    warehouse_file = project.warehouse_path
    if not warehouse_file.exists():
        say(f"FAIL  no warehouse file at {warehouse_file}: materialize the models first")
        return 1
    warehouse = DuckDBWarehouse.at(str(warehouse_file))
    try:
        client = connect(creds)
    except (SalesforceAuthError, SalesforceUnavailable, ValueError) as exc:
        say(f"FAIL  login to {creds.login_url} ({creds.auth}): {exc}")
        return 1
    state_file = project.state_path
    code = 0
    try:
        with StateStore(state_file) as state:
            for key in keys:
                try:
                    window = _window(project, spec, key)
                    source = sync_source(spec, project, warehouse, partition=key, window=window)
                    preview = preview_sync_partition(
                        spec, source, client, state, partition=key, sample=rows
                    )
                except TableNotFound as exc:
                    say(
                        f"FAIL  sync '{spec.name}': the model's table '{exc.table}' does not "
                        f"exist yet: materialize '{spec.source_model}' first"
                    )
                    return 1
                except (SyncConfigError, DeleteGuardTripped, ValueError) as exc:
                    say(f"FAIL  {exc}")
                    code = 1
                    continue
                except (SalesforceRequestError, SalesforceUnavailable) as exc:
                    say(f"FAIL  sync '{spec.name}': Salesforce: {exc}")
                    return 1
                for line in preview.lines():
                    say(line)
                used = ", ".join(f"{k} {v}" for k, v in sorted(preview.api_calls.items()))
                say(f"  (this preview used {used or 'no API call'}; nothing was sent)")
    finally:
        client.close()
    return code


def _window(project: Any, spec: Any, key: str) -> tuple[datetime, datetime] | None:
    """The time window of a time partition key (Dagster's own partitions say where it ends)."""
    if spec.partitions.kind != "time":
        return None
    tp = project.time_partitions_of(spec.source_model)
    if tp is None:
        return None
    from sf_activations.defs.assets import time_partitions_def

    try:
        span = time_partitions_def(tp).time_window_for_partition_key(key)
    except Exception as exc:
        msg = f"'{key}' is not a {tp.granularity} partition of model '{spec.source_model}' ({exc})"
        raise ValueError(msg) from None
    return span.start, span.end


def add_parser(subparsers: Any) -> None:
    """Register ``sf-activations preview``."""
    parser = subparsers.add_parser(
        "preview",
        help="sync tester: show what the next run of a sync would send, without sending it",
        description=(
            "Read the sync's model, validate it, compare it with the sync's state and plan the "
            "writes exactly as a run would, then print the counts, the invalid rows, the keys a "
            "lookup could not match and each planned write with sample values. Salesforce is "
            "only queried (describe, lookups) and state is only read."
        ),
    )
    parser.add_argument("sync", help="the sync's name")
    parser.add_argument(
        "--project",
        default=os.environ.get(ENV_PROJECT, str(DEMO_PROJECT_DIR)),
        help=f"the project folder (default: ${ENV_PROJECT}, else the demo project)",
    )
    parser.add_argument(
        "--partition",
        default=None,
        help="one partition (b00... for hash buckets, a date for time partitions); "
        "default: the whole sync, every bucket",
    )
    parser.add_argument(
        "--rows", type=int, default=5, help="sample records shown per write (default 5)"
    )
    parser.set_defaults(
        func=lambda args: preview_project(
            args.project, args.sync, partition=args.partition, rows=args.rows
        )
    )
