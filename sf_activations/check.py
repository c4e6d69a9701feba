"""``sf-activations check``: is the project ready to sync? Config, connection, describe, columns.

This is where describe-dependent config errors (unknown object or field, read-only field, key
that is not an External ID) show up live before any run. Loading the project for Dagster stays
offline: it checks the syncs against the describes stored here (and by every run) in the
project's describe snapshot; ``check --refresh`` rewrites that snapshot after a change in
Salesforce.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from sf_activations.sync.model import ObjectDescribe


@dataclass
class CheckResult:
    """Lines printed and whether everything passed."""

    ok: bool = True
    lines: list[str] = field(default_factory=list)

    def good(self, text: str) -> None:
        self.lines.append(f"ok    {text}")

    def bad(self, text: str) -> None:
        self.ok = False
        self.lines.append(f"FAIL  {text}")


def check_project(
    project_dir: str | os.PathLike[str], *, sync: str | None = None, refresh: bool = False
) -> CheckResult:
    """Load the project, log in to Salesforce and check every sync (or one) against describe().

    Every describe fetched (the syncs' objects and their lookups' parents) is stored in the
    project's describe snapshot, which ``build_definitions`` checks the syncs against offline.
    ``refresh`` re-reads describes even if cached and drops stored objects no sync uses.
    """
    from sf_activations.config import (
        PROJECT_FILE,
        ConfigError,
        load_project,
        resolve_credentials,
    )
    from sf_activations.config.snapshot import (
        describe_problems,
        remove_others,
        save_describe,
        save_missing,
    )
    from sf_activations.salesforce.connection import connect
    from sf_activations.salesforce.errors import SalesforceAuthError
    from sf_activations.sync.model import SalesforceRequestError, SalesforceUnavailable
    from sf_activations.warehouse.duckdb import DuckDBWarehouse

    result = CheckResult()
    try:
        project = load_project(project_dir)
    except ConfigError as exc:
        for problem in exc.problems:
            result.bad(str(problem))
        return result
    result.good(
        f"project {project.root}: {len(project.models)} model(s), {len(project.syncs)} sync(s)"
    )
    specs = [project.sync(sync)] if sync else list(project.syncs)

    try:
        creds = resolve_credentials(
            project.config.salesforce, file=str(project.root / PROJECT_FILE)
        )
    except ConfigError as exc:
        for problem in exc.problems:
            result.bad(str(problem))
        return result
    try:
        client = connect(creds)
    except (SalesforceAuthError, SalesforceUnavailable, ValueError) as exc:
        result.bad(f"login to {creds.login_url} ({creds.auth}): {exc}")
        return result
    try:
        usage = client.api_usage()
        extra = f", API requests used today {usage[0]}/{usage[1]}" if usage else ""
        result.good(f"logged in to {client.instance_url} ({creds.auth}){extra}")
        warehouse_file = project.warehouse_path
        warehouse = DuckDBWarehouse.at(str(warehouse_file)) if warehouse_file.exists() else None
        fetched: set[str] = set()
        for spec in specs:
            where = f"sync '{spec.name}' ({spec.source_file})"
            try:
                describe = client.describe(spec.sobject, refresh=refresh)
            except SalesforceRequestError as exc:
                if exc.code == "NOT_FOUND":
                    save_missing(
                        project.describe_dir,
                        spec.sobject,
                        exc.code,
                        instance_url=client.instance_url,
                    )
                    fetched.add(spec.sobject)
                result.bad(f"{where}: object '{spec.sobject}': {exc.code}: {exc.message}")
                continue
            save_describe(project.describe_dir, describe, instance_url=client.instance_url)
            fetched.add(describe.name)
            parents = _parent_describes(client, spec, describe, refresh=refresh)
            for parent in parents.values():
                save_describe(project.describe_dir, parent, instance_url=client.instance_url)
                fetched.add(parent.name)
            fit_problems = describe_problems(
                spec, describe, parents=parents, fix=f"Edit {Path(spec.source_file).name}."
            )
            for problem in fit_problems:
                result.bad(str(problem))
            if not fit_problems:
                result.good(f"{where}: {len(spec.mappings)} mapping(s) fit {describe.name}")
            if warehouse is not None:
                _check_columns(result, where, spec, project, warehouse)
        if refresh and sync is None:
            # Objects no sync uses any more would only ever produce stale checks.
            remove_others(project.describe_dir, fetched)
        result.good(
            f"describes of {', '.join(sorted(fetched)) or 'no object'} stored in "
            f"{project.describe_dir} (definitions are checked against them when they load)"
        )
    finally:
        client.close()
    return result


def _parent_describes(
    client: Any, spec: Any, describe: Any, *, refresh: bool
) -> dict[str, ObjectDescribe]:
    """Describes of the objects the sync's lookups point at (to check the lookup fields)."""
    from sf_activations.config.snapshot import objects_needed
    from sf_activations.sync.model import SalesforceRequestError

    out: dict[str, ObjectDescribe] = {}
    for name in objects_needed(spec, describe)[1:]:
        try:
            out[name] = client.describe(name, refresh=refresh)
        except SalesforceRequestError:
            # The lookup's own check names the field; a parent we cannot see is not checked.
            continue
    return out


def _check_columns(
    result: CheckResult, where: str, spec: Any, project: Any, warehouse: Any
) -> None:
    from sf_activations.warehouse.base import TableNotFound

    table = project.table_of(spec.source_model)
    try:
        columns = set(warehouse.columns(table))
    except TableNotFound:
        result.lines.append(
            f"skip  {where}: table '{table}' is not built yet (materialize the model first)"
        )
        return
    wanted = [("key.source", spec.key.source)] + [
        (f"mappings[{i}].source", m.source) for i, m in enumerate(spec.mappings)
    ]
    missing = [f"{fld} '{col}'" for fld, col in wanted if col not in columns]
    if missing:
        result.bad(f"{where}: not columns of '{table}': {', '.join(missing)}")


def _main(args: argparse.Namespace) -> int:
    out: TextIO = sys.stdout
    result = check_project(args.project, sync=args.sync, refresh=args.refresh)
    for line in result.lines:
        print(line, file=out)
    print("ready to sync" if result.ok else "not ready: fix the FAIL lines above", file=out)
    return 0 if result.ok else 1


def describe_snapshot_lines(project_dir: str | os.PathLike[str]) -> list[str]:
    """The stored describes of a project, one line per object (what load-time checks use)."""
    from datetime import UTC, datetime

    from sf_activations.config import load_project
    from sf_activations.config.snapshot import REFRESH_COMMAND, load_snapshot

    project = load_project(project_dir)
    snapshot = load_snapshot(project.describe_dir)
    if not snapshot:
        return [
            f"no describe snapshot in {project.describe_dir}: definitions load unchecked; "
            f"run `{REFRESH_COMMAND}` (or any sync) to take one"
        ]
    now = datetime.now(UTC)
    lines = [f"describe snapshot in {project.describe_dir}:"]
    for entry in sorted(snapshot.values(), key=lambda e: e.sobject.lower()):
        age_h = (now - entry.fetched_at).total_seconds() / 3600
        what = (
            f"{len(entry.describe.fields)} fields"
            if entry.describe is not None
            else f"not found ({entry.error})"
        )
        lines.append(
            f"  {entry.sobject:<24} {what:<24} taken {entry.fetched_at:%Y-%m-%d %H:%M} UTC "
            f"({age_h:.1f} h ago) from {entry.instance_url or 'unknown org'}"
        )
    used = {s.sobject.lower() for s in project.syncs}
    missing = sorted(s.sobject for s in project.syncs if s.sobject.lower() not in snapshot)
    if missing:
        lines.append(f"not in the snapshot (unchecked at load): {', '.join(missing)}")
    unused = sorted(e.sobject for k, e in snapshot.items() if k not in used)
    if unused:
        lines.append(f"also stored (lookup parents or unused): {', '.join(unused)}")
    return lines


def _describe_main(args: argparse.Namespace) -> int:
    if args.refresh:
        return int(_main(argparse.Namespace(project=args.project, sync=None, refresh=True)))
    for line in describe_snapshot_lines(args.project):
        print(line)
    return 0


def add_parser(subparsers: Any) -> None:
    """Register ``sf-activations check`` and ``sf-activations describe``."""
    from sf_activations.demo_project import DEMO_PROJECT_DIR

    default_project = os.environ.get("SF_ACTIVATIONS_PROJECT") or str(DEMO_PROJECT_DIR)
    describe = subparsers.add_parser(
        "describe",
        help="show the stored describe snapshot that definitions are checked against",
        description="Show the describes stored for a project (taken by runs and by `check`). "
        "--refresh fetches them again (the same as `check --refresh`).",
    )
    describe.add_argument("--project", default=default_project, type=Path)
    describe.add_argument(
        "--refresh", action="store_true", help="fetch every describe again and store it"
    )
    describe.set_defaults(func=_describe_main)

    parser = subparsers.add_parser(
        "check",
        help="check a project's config, Salesforce login and each sync against describe()",
        description=__doc__,
    )
    parser.add_argument(
        "--project",
        default=default_project,
        type=Path,
        help="project folder (default: $SF_ACTIVATIONS_PROJECT or the demo project)",
    )
    parser.add_argument("--sync", default=None, help="check only this sync")
    parser.add_argument(
        "--refresh",
        action="store_true",
        help="re-read every describe and rewrite the stored snapshot (drops objects no sync uses)",
    )
    parser.set_defaults(func=_main)
