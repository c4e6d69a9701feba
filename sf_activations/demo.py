"""``sf-activations demo``: sample data -> DuckDB models -> the Salesforce emulator, through Dagster.

What it does, in order:

1. writes a few thousand sample accounts and contacts (about 2% with values Salesforce refuses),
   and a vendor's enrichment file keyed by email, into a DuckDB file in the work dir
   (``./demo_output`` by default);
2. starts the Salesforce emulator (HTTPS, on a free port) and points the embedded demo project at
   it through environment variables (the project YAML names them; no secret is in a file we ship);
3. materializes every model and every partition of every sync with ``dagster.materialize``, in a
   Dagster instance kept in the work dir (so ``dagster dev`` shows these runs afterwards);
4. prints a summary per sync, then runs everything a second time to show that nothing is re-sent;
5. with ``--serve``, keeps the emulator up and prints the exact ``dagster dev`` command for the UI.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    import dagster as dg

    from sf_activations.emulator.org import Org
    from sf_activations.emulator.server import EmulatorServer

DEFAULT_DIR = "demo_output"
DEFAULT_ROWS = 3000
TIER_VALUES = ("Gold", "Silver", "Bronze")
# Runs log at WARNING on the console: the demo prints its own progress; the UI has the rest.
_QUIET: dict[str, Any] = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


@dataclass
class SyncTotals:
    """One sync's numbers summed over its partitions, for the printed summary."""

    sync: str
    partitions: int = 0
    read: int = 0
    compared: int = 0  # rows read in full and mapped (the others were unchanged at the source)
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    invalid: int = 0
    rejected: int = 0
    pending: int = 0
    api_calls: int = 0
    seconds: float = 0.0
    check_passed: bool = True
    errors: dict[str, int] = field(default_factory=dict)

    def add(self, metadata: Mapping[str, Any], seconds: float) -> None:
        """Add one partition's materialization metadata (values of ``sf/*`` keys)."""
        self.partitions += 1
        self.read += int(metadata.get("sf/records_read", 0))
        self.compared += int(metadata.get("sf/rows_compared", 0))
        self.created += int(metadata.get("sf/created", 0))
        self.updated += int(metadata.get("sf/updated", 0))
        self.unchanged += int(metadata.get("sf/unchanged", 0))
        self.invalid += int(metadata.get("sf/invalid", 0))
        self.rejected += int(metadata.get("sf/rejected", 0))
        self.pending += int(metadata.get("sf/pending_retries", 0))
        self.api_calls += int(metadata.get("sf/api_calls_total", 0))
        self.seconds += seconds


def demo_org() -> Org:
    """A fresh emulated org set up like a customer's: a custom field and a trigger.

    ``Account.Tier__c`` is a restricted picklist (Gold, Silver, Bronze); an Account trigger
    refuses billing country Atlantis.
    """
    from sf_activations.demo_project.sample_data import ATLANTIS
    from sf_activations.emulator.org import Org
    from sf_activations.emulator.schema import FieldDef, default_schema

    schema = default_schema()
    schema.add_field(
        "Account",
        FieldDef(
            name="Tier__c",
            label="Tier",
            type="picklist",
            length=255,
            restricted_picklist=True,
            picklist_values=TIER_VALUES,
            custom=True,
        ),
    )
    org = Org(schema)
    # The kind of rule real orgs have: an Apex trigger that refuses some records. Only
    # Salesforce knows it, so those records come back rejected, not invalid.
    org.add_trigger(
        "Account",
        field="BillingCountry",
        equals=ATLANTIS,
        message="ValidateBillingCountry: execution of BeforeInsert caused by: Atlantis is not a country we bill",
    )
    return org


def emulator_environment(server: EmulatorServer, work_dir: Path) -> dict[str, str]:
    """The environment variables the demo project's YAML names, pointing at ``server``."""
    info = server.connection_info
    return {
        "SF_LOGIN_URL": str(info["login_url"]),
        "SF_USERNAME": str(info["username"]),
        "SF_PASSWORD": str(info["password"]),
        "SF_SECURITY_TOKEN": str(info["security_token"]),
        "SF_CA_CERT": str(info["ca_cert"]),
        "SF_ACTIVATIONS_WAREHOUSE": str(work_dir / "warehouse.duckdb"),
        "SF_ACTIVATIONS_STATE": str(work_dir / "state" / "state.sqlite"),
        "DAGSTER_HOME": str(work_dir / "dagster_home"),
    }


@contextmanager
def _environment(values: Mapping[str, str]) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, old in saved.items():
            if old is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = old


def materialize_all(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    *,
    on_partition: Callable[[str, str, Mapping[str, Any], float, bool], None] | None = None,
) -> dict[str, SyncTotals]:
    """Materialize every model, then every sync partition in dependency order.

    Returns the totals per sync, summed from the materializations' metadata (the real
    results, as the UI shows them).
    """
    import dagster as dg

    from sf_activations.defs.assets import MODELS_GROUP, SYNCS_GROUP

    assets = [a for a in defs.assets or [] if isinstance(a, dg.AssetsDefinition | dg.AssetSpec)]
    resources = dict(defs.resources or {})
    graph = defs.resolve_asset_graph()
    model_keys = [k for k in graph.get_all_asset_keys() if graph.get(k).group_name == MODELS_GROUP]
    if model_keys:
        result = dg.materialize(
            assets, selection=model_keys, resources=resources, instance=instance, run_config=_QUIET
        )
        if not result.success:
            msg = "building the models failed (see the log above)"
            raise RuntimeError(msg)

    sync_keys = [k for k in graph.toposorted_asset_keys if graph.get(k).group_name == SYNCS_GROUP]
    totals: dict[str, SyncTotals] = {}
    for key in sync_keys:
        node = graph.get(key)
        name = key.path[-1]
        totals[name] = SyncTotals(sync=name)
        partition_keys = (
            node.partitions_def.get_partition_keys(dynamic_partitions_store=instance)
            if node.partitions_def
            else [None]
        )
        for pkey in partition_keys:
            started = time.perf_counter()
            result = dg.materialize(
                assets,
                selection=[key],
                partition_key=pkey,
                resources=resources,
                instance=instance,
                run_config=_QUIET,
                raise_on_error=False,
            )
            seconds = time.perf_counter() - started
            if not result.success:
                failures = result.get_step_failure_events()
                detail = failures[0].message if failures else "see the log above"
                msg = f"sync {name} partition {pkey or '__all__'} failed: {detail}"
                raise RuntimeError(msg)
            metadata: dict[str, Any] = {}
            for event in result.get_asset_materialization_events():
                mat = event.step_materialization_data.materialization
                if mat is not None and mat.asset_key == key:
                    metadata = {k: v.value for k, v in mat.metadata.items()}
            passed = all(ev.passed for ev in result.get_asset_check_evaluations())
            errors = metadata.get("sf/error_codes")
            if errors is not None:
                for rec in errors.records:
                    code = str(rec.data["code"])
                    totals[name].errors[code] = totals[name].errors.get(code, 0) + int(
                        rec.data["count"]
                    )
            totals[name].add(metadata, seconds)
            totals[name].check_passed &= passed
            if on_partition is not None:
                on_partition(name, pkey or "__all__", metadata, seconds, passed)
    return totals


def format_summary(totals: Mapping[str, SyncTotals]) -> str:
    """The per-sync summary table."""
    head = (
        "sync",
        "parts",
        "read",
        "compared",
        "created",
        "updated",
        "unchanged",
        "invalid",
        "rejected",
        "API calls",
        "seconds",
        "check",
    )
    rows = [
        (
            t.sync,
            str(t.partitions),
            str(t.read),
            str(t.compared),
            str(t.created),
            str(t.updated),
            str(t.unchanged),
            str(t.invalid),
            str(t.rejected),
            str(t.api_calls),
            f"{t.seconds:.1f}",
            "ok" if t.check_passed else "FAILED",
        )
        for t in totals.values()
    ]
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]

    def line(cells: tuple[str, ...]) -> str:
        return "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        )

    out = [line(head), "  ".join("-" * w for w in widths), *(line(r) for r in rows)]
    errors = {t.sync: t.errors for t in totals.values() if t.errors}
    for sync, counts in errors.items():
        listed = ", ".join(
            f"{code} x{n}" for code, n in sorted(counts.items(), key=lambda kv: -kv[1])
        )
        out.append(f"  {sync}: {listed}")
    return "\n".join(out)


@dataclass(frozen=True)
class DemoResult:
    """What ``run_demo`` did (returned for tests)."""

    work_dir: Path
    first: Mapping[str, SyncTotals]
    second: Mapping[str, SyncTotals]
    org_counts: Mapping[str, int]


def run_demo(
    *,
    rows: int = DEFAULT_ROWS,
    work_dir: str | os.PathLike[str] = DEFAULT_DIR,
    serve: bool = False,
    out: TextIO = sys.stdout,
) -> DemoResult:
    """Run the whole demo; see the module docstring."""
    import dagster as dg

    from sf_activations.defs import build_definitions
    from sf_activations.demo_project import DEMO_PROJECT_DIR
    from sf_activations.demo_project.sample_data import write_sample_data
    from sf_activations.emulator.server import Emulator, EmulatorServer
    from sf_activations.warehouse.duckdb import DuckDBWarehouse

    work = Path(work_dir).resolve()
    # Every demo starts clean: the emulator's org lives in memory, so old state would claim
    # records are in Salesforce that the new org never saw.
    for stale in ("warehouse.duckdb", "warehouse.duckdb.wal", "state", "dagster_home"):
        target = work / stale
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()
    (work / "dagster_home").mkdir(parents=True, exist_ok=True)
    (work / "dagster_home" / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    (work / "state").mkdir(parents=True, exist_ok=True)

    def say(text: str = "") -> None:
        print(text, file=out, flush=True)

    t0 = time.perf_counter()
    sample = write_sample_data(DuckDBWarehouse.at(str(work / "warehouse.duckdb")), accounts=rows)
    say(
        f"1. Sample data in {work / 'warehouse.duckdb'}: {sample.accounts} accounts "
        f"({sample.bad_accounts} with bad values), {sample.contacts} contacts "
        f"({sample.bad_contacts} with bad values), {sample.enrichment} vendor enrichment rows "
        f"keyed by email ({sample.unknown_emails} of people no contact has) "
        f"[{time.perf_counter() - t0:.1f} s]"
    )

    server = EmulatorServer(Emulator(demo_org()), state_dir=work / "emulator")
    server.start()
    try:
        env = emulator_environment(server, work)
        say(f"2. Salesforce emulator at {server.url} (connection file: {server.connection_file})")
        with _environment(env):
            defs = build_definitions(DEMO_PROJECT_DIR)
            with dg.DagsterInstance.get() as instance:

                def progress(
                    sync: str, part: str, md: Mapping[str, Any], secs: float, ok: bool
                ) -> None:
                    say(
                        f"   {sync}[{part}]: read {md.get('sf/records_read', 0)}, created "
                        f"{md.get('sf/created', 0)}, updated {md.get('sf/updated', 0)}, "
                        f"rejected {md.get('sf/rejected', 0)} ({secs:.1f} s){'' if ok else '  check FAILED'}"
                    )

                say("3. First run: every model, every partition of every sync")
                first = materialize_all(defs, instance, on_partition=progress)
                say()
                say(format_summary(first))
                say()
                say(
                    "4. Second run, nothing changed in the warehouse: nothing is re-sent except the "
                    "records Salesforce refused and the keys that matched no record, which stay "
                    "pending and are retried on every run"
                )
                second = materialize_all(defs, instance)
                say(format_summary(second))
        counts = {obj: server.org.count(obj) for obj in ("Account", "Contact")}
        say()
        say(
            f"   The emulated org now holds {counts['Account']} Accounts and {counts['Contact']} Contacts."
        )
        env_file = work / "demo.env"
        env_file.write_text("".join(f"export {k}={v}\n" for k, v in env.items()), encoding="utf-8")
        env_file.chmod(0o600)
        if serve:
            say()
            say("5. The emulator keeps running. Open the UI on the same project, in another shell:")
            say(
                f"     cd {Path.cwd()} && . {env_file} && {Path(sys.executable).parent / 'dagster'} dev -m sf_activations.definitions"
            )
            say("   then open http://127.0.0.1:3000 (asset groups models and salesforce_syncs).")
            say("   Press Ctrl-C here to stop the emulator.")
            _wait_for_stop()
            say("stopping the emulator")
        else:
            say()
            say(
                "To browse these runs in the Dagster UI, keep the emulator up and start dagster dev:"
            )
            say(f"     sf-activations demo --serve --dir {work}")
        return DemoResult(work_dir=work, first=first, second=second, org_counts=counts)
    finally:
        server.stop()


def _wait_for_stop() -> None:
    """Block until SIGINT or SIGTERM.

    SIGINT gets its default handler back: a shell that starts us in the background leaves it
    ignored, and then Ctrl-C (or ``kill -INT``) would do nothing.
    """

    def stop(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        return


def _main(args: argparse.Namespace) -> int:
    try:
        run_demo(rows=args.rows, work_dir=args.dir, serve=args.serve)
    except RuntimeError as exc:
        print(f"demo failed: {exc}", file=sys.stderr)
        return 1
    return 0


def add_parser(subparsers: Any) -> None:
    """Register ``sf-activations demo``."""
    parser = subparsers.add_parser(
        "demo",
        help="sample data synced into a local Salesforce emulator through Dagster",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--rows",
        type=int,
        default=DEFAULT_ROWS,
        help="number of accounts (contacts: about twice as many)",
    )
    parser.add_argument(
        "--dir", default=DEFAULT_DIR, help="work dir for the DuckDB file, state and Dagster runs"
    )
    parser.add_argument(
        "--serve",
        action="store_true",
        help="keep the emulator running and print the dagster dev command",
    )
    parser.set_defaults(func=_main)
