"""Load a project folder into typed definitions: models, sources and ``SyncSpec``s.

A project folder holds ``sf_activations.yaml`` (connections, state path, sources, model
settings), ``models/*.sql`` (each a SELECT that becomes a table) and ``syncs/*.yaml`` (one sync
each). Every problem found is collected and raised together as one ``ConfigError`` whose lines
name the file, the sync, the field and what to do.

Checks that need Salesforce's describe() (unknown object or field, read-only field, key not an
External ID) are NOT done here: loading must work without the network (``dagster dev``, CI and
``definitions validate`` load the project offline, and a slow or unreachable org must not break
the UI). ``build_definitions`` runs them against the describe snapshot that runs and
``sf-activations check`` store (``snapshot.py``) when one exists; they also run live at the
start of each sync asset's run and in ``sf-activations check``, all through the engine's
``validate_spec``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from pydantic import ValidationError

from sf_activations.config.errors import ConfigError, ConfigProblem
from sf_activations.config.models import (
    ProjectConfig,
    SalesforceConfig,
    SyncConfig,
    TimePartitionConfig,
)
from sf_activations.sync.spec import FieldMapping, PartitionSpec, SyncKey, SyncSpec
from sf_activations.warehouse.lineage import referenced_tables

if TYPE_CHECKING:
    from sf_activations.salesforce.connection import SalesforceCredentials

PROJECT_FILE = "sf_activations.yaml"


@dataclass(frozen=True, slots=True)
class ModelDef:
    """One ``models/<name>.sql``: a SELECT that becomes table ``name``."""

    name: str
    sql: str
    path: Path
    deps: tuple[str, ...]  # models and sources its SQL reads, for lineage
    description: str | None = None
    time_partitions: TimePartitionConfig | None = None


@dataclass(frozen=True, slots=True)
class SourceDef:
    """A table built elsewhere (a dbt model, say) that models and syncs may read."""

    name: str
    table: str
    asset_key: tuple[str, ...]
    description: str | None = None


@dataclass(frozen=True, slots=True)
class Project:
    """A loaded, statically checked project."""

    root: Path
    config: ProjectConfig
    models: Mapping[str, ModelDef]
    sources: Mapping[str, SourceDef]
    syncs: tuple[SyncSpec, ...]
    sync_after: Mapping[str, tuple[str, ...]]  # sync -> syncs that must run before it

    @property
    def warehouse_path(self) -> Path:
        """The DuckDB file (env override applied), absolute."""
        wh = self.config.warehouse
        raw = os.environ.get(wh.path_env, wh.path) if wh.path_env else wh.path
        return (self.root / raw).resolve()

    @property
    def state_path(self) -> Path:
        """The state SQLite file (env override applied), absolute."""
        st = self.config.state
        raw = os.environ.get(st.path_env, st.path) if st.path_env else st.path
        return (self.root / raw).resolve()

    @property
    def describe_dir(self) -> Path:
        """Where the describe snapshot lives: ``describe/`` next to the state file."""
        from sf_activations.config.snapshot import snapshot_dir

        return snapshot_dir(self.state_path)

    def sync(self, name: str) -> SyncSpec:
        """The sync called ``name``."""
        for spec in self.syncs:
            if spec.name == name:
                return spec
        msg = f"no sync named '{name}' in {self.root}; known syncs: {', '.join(s.name for s in self.syncs)}"
        raise KeyError(msg)

    def table_of(self, source_model: str) -> str:
        """The warehouse table a sync's ``source_model`` names."""
        if source_model in self.sources:
            return self.sources[source_model].table
        return source_model

    def time_partitions_of(self, source_model: str) -> TimePartitionConfig | None:
        """The time partitioning of a model, or None."""
        model = self.models.get(source_model)
        return model.time_partitions if model else None


def load_project(project_dir: str | os.PathLike[str]) -> Project:
    """Read and check a project folder. Raises ``ConfigError`` listing every problem found."""
    root = Path(project_dir).resolve()
    problems: list[ConfigProblem] = []
    project_file = root / PROJECT_FILE
    config = _load_project_file(project_file, problems)
    if config is None:
        raise ConfigError(problems)

    sources: dict[str, SourceDef] = {}
    for src in config.sources:
        if src.name in sources:
            problems.append(
                ConfigProblem(
                    str(project_file),
                    f"source '{src.name}' is declared twice.",
                    "Give each source its own name.",
                    field="sources",
                )
            )
        sources[src.name] = SourceDef(
            name=src.name,
            table=src.table,
            asset_key=tuple(src.asset_key or [src.name]),
            description=src.description,
        )

    models = _load_models(root, config, set(sources), problems)
    for name in sorted(set(config.models) - set(models)):
        problems.append(
            ConfigProblem(
                str(project_file),
                f"settings are given for model '{name}' but there is no models/{name}.sql.",
                f"Create models/{name}.sql or remove '{name}' from 'models'.",
                field=f"models.{name}",
            )
        )
    after: dict[str, tuple[str, ...]] = {}
    syncs = _load_syncs(root, models, sources, problems, after)
    names = {s.name for s in syncs}
    for spec in syncs:
        for other in after.get(spec.name, ()):
            if other not in names:
                problems.append(
                    ConfigProblem(
                        spec.source_file,
                        f"'after' names '{other}', which is not a sync of this project.",
                        f"Use one of: {', '.join(sorted(names - {spec.name}))}."
                        if names - {spec.name}
                        else "Remove it: this project has no other sync.",
                        sync=spec.name,
                        field="after",
                    )
                )
    if problems:
        raise ConfigError(problems)
    return Project(
        root=root, config=config, models=models, sources=sources, syncs=syncs, sync_after=after
    )


def _read_yaml(path: Path, problems: list[ConfigProblem]) -> Any:
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        problems.append(
            ConfigProblem(
                str(path),
                "file not found.",
                f"Create {path.name} (see the demo project for an example).",
            )
        )
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        reason = getattr(exc, "problem", None) or str(exc)
        problems.append(
            ConfigProblem(
                str(path),
                f"is not valid YAML{where}: {reason}.",
                "Fix the YAML syntax (indentation, a missing ':' or an unclosed quote).",
            )
        )
    return None


def _pydantic_problems(
    path: Path, exc: ValidationError, *, sync: str | None = None, prefix: str = ""
) -> list[ConfigProblem]:
    out = []
    for err in exc.errors():
        loc = ".".join(str(p) if not isinstance(p, int) else f"[{p}]" for p in err["loc"])
        loc = (prefix + loc).replace(".[", "[")
        message = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            message = "is not a known setting."
            fix = "Remove it or check its spelling."
        elif err["type"] == "missing":
            message = "is required."
            fix = "Add it."
        else:
            fix = ""
        out.append(ConfigProblem(str(path), message, fix, sync=sync, field=loc or None))
    return out


def _load_project_file(path: Path, problems: list[ConfigProblem]) -> ProjectConfig | None:
    raw = _read_yaml(path, problems)
    if raw is None and not problems:
        raw = {}
    if problems:
        return None
    if not isinstance(raw, dict):
        problems.append(
            ConfigProblem(str(path), "must be a mapping of settings.", "See the demo project.")
        )
        return None
    try:
        return ProjectConfig.model_validate(raw)
    except ValidationError as exc:
        problems.extend(_pydantic_problems(path, exc))
        return None


def _load_models(
    root: Path, config: ProjectConfig, source_names: set[str], problems: list[ConfigProblem]
) -> dict[str, ModelDef]:
    paths = sorted((root / "models").glob("*.sql"))
    names = {p.stem.lower(): p.stem for p in paths}
    models: dict[str, ModelDef] = {}
    for path in paths:
        name = path.stem
        if not name.replace("_", "").isalnum():
            problems.append(
                ConfigProblem(
                    str(path),
                    f"model name '{name}' must be letters, digits and _ only.",
                    "Rename the file.",
                )
            )
            continue
        if name in source_names:
            problems.append(
                ConfigProblem(
                    str(path),
                    f"'{name}' is both a model and a declared source.",
                    "Rename the model or the source.",
                )
            )
        sql = path.read_text(encoding="utf-8")
        refs = referenced_tables(sql)
        known = {n.lower(): n for n in source_names} | names
        deps = tuple(sorted(known[r] for r in refs if r in known and r != name.lower()))
        settings = config.models.get(name)
        models[name] = ModelDef(
            name=name,
            sql=sql,
            path=path,
            deps=deps,
            description=settings.description if settings else None,
            time_partitions=settings.time_partitions if settings else None,
        )
    return models


def _load_syncs(
    root: Path,
    models: Mapping[str, ModelDef],
    sources: Mapping[str, SourceDef],
    problems: list[ConfigProblem],
    after: dict[str, tuple[str, ...]],
) -> tuple[SyncSpec, ...]:
    specs: list[SyncSpec] = []
    seen: dict[str, Path] = {}
    for path in sorted((root / "syncs").glob("*.y*ml")):
        before = len(problems)
        raw = _read_yaml(path, problems)
        if len(problems) > before:
            continue
        if not isinstance(raw, dict):
            problems.append(
                ConfigProblem(
                    str(path),
                    "must be a mapping (source, object, behavior, key, mappings).",
                    "See the demo project's syncs/.",
                )
            )
            continue
        sync_name = str(raw.get("name") or path.stem)
        try:
            cfg = SyncConfig.model_validate(raw)
        except ValidationError as exc:
            problems.extend(_pydantic_problems(path, exc, sync=sync_name))
            continue
        name = cfg.name or path.stem
        spec = _to_spec(cfg, name, path=path, models=models, sources=sources, problems=problems)
        if name in seen:
            problems.append(
                ConfigProblem(
                    str(path),
                    f"sync name '{name}' is already used by {seen[name]}.",
                    "Give each sync a unique name.",
                    sync=name,
                    field="name",
                )
            )
        seen[name] = path
        if spec is not None:
            specs.append(spec)
            after[name] = tuple(cfg.after)
    return tuple(specs)


def _to_spec(
    cfg: SyncConfig,
    name: str,
    *,
    path: Path,
    models: Mapping[str, ModelDef],
    sources: Mapping[str, SourceDef],
    problems: list[ConfigProblem],
) -> SyncSpec | None:
    file = str(path)
    ok = True
    if cfg.source not in models and cfg.source not in sources:
        known = sorted([*models, *sources])
        problems.append(
            ConfigProblem(
                file,
                f"unknown model '{cfg.source}' (known: {', '.join(known) or 'none'}).",
                f"Create models/{cfg.source}.sql, declare it under 'sources' in {PROJECT_FILE}, or fix the name.",
                sync=name,
                field="source",
            )
        )
        ok = False
    if cfg.key.target.lower() == "id" and cfg.behavior in ("update_or_create", "create_only"):
        problems.append(
            ConfigProblem(
                file,
                f"the Salesforce Id cannot identify records for behavior '{cfg.behavior}': Salesforce assigns it on create.",
                "Use an External ID field (e.g. External_Id__c) as key.target, or behavior update_only.",
                sync=name,
                field="key.target",
            )
        )
        ok = False
    targets: dict[str, int] = {}
    for i, m in enumerate(cfg.mappings):
        low = m.target.lower()
        if low in targets:
            problems.append(
                ConfigProblem(
                    file,
                    f"Salesforce field '{m.target}' is mapped twice (mappings[{targets[low]}] and mappings[{i}]).",
                    "Keep one mapping per Salesforce field.",
                    sync=name,
                    field=f"mappings[{i}].target",
                )
            )
            ok = False
        targets[low] = i
        if low == cfg.key.target.lower():
            problems.append(
                ConfigProblem(
                    file,
                    f"'{m.target}' is the sync key's field; it is sent from key.source already.",
                    "Remove this mapping.",
                    sync=name,
                    field=f"mappings[{i}].target",
                )
            )
            ok = False
        if m.lookup is not None and low.endswith("__r"):
            problems.append(
                ConfigProblem(
                    file,
                    f"a lookup maps to the reference field ('{m.target[:-3]}__c'), not to the relationship '{m.target}'.",
                    f"Write target: {m.target[:-3]}__c.",
                    sync=name,
                    field=f"mappings[{i}].target",
                )
            )
            ok = False
    if cfg.partitions.kind == "time" and (
        cfg.source not in models or models[cfg.source].time_partitions is None
    ):
        problems.append(
            ConfigProblem(
                file,
                f"time partitions need a time-partitioned model, and '{cfg.source}' is not one.",
                f"Set models.{cfg.source}.time_partitions in {PROJECT_FILE}, or use partitions: none / hash.",
                sync=name,
                field="partitions.kind",
            )
        )
        ok = False
    if not ok:
        return None
    return SyncSpec(
        name=name,
        source_model=cfg.source,
        sobject=cfg.object,
        behavior=cfg.behavior,
        key=SyncKey(source=cfg.key.source, target=cfg.key.target),
        mappings=tuple(
            FieldMapping(source=m.source, target=m.target, lookup_field=m.lookup)
            for m in cfg.mappings
        ),
        partitions=PartitionSpec(kind=cfg.partitions.kind, buckets=cfg.partitions.buckets),
        batch_size=cfg.batch_size,
        rest_threshold=cfg.rest_threshold,
        max_rejected_fraction=cfg.max_rejected_fraction,
        max_attempts=cfg.max_attempts,
        schedule=cfg.schedule,
        source_file=file,
    )


# Credentials field -> (literal setting, env setting) in SalesforceConfig.
_CRED_FIELDS: dict[str, tuple[str | None, str | None]] = {
    "login_url": ("login_url", "login_url_env"),
    "username": ("username", "username_env"),
    "password": (None, "password_env"),
    "security_token": (None, "security_token_env"),
    "consumer_key": (None, "consumer_key_env"),
    "consumer_secret": (None, "consumer_secret_env"),
    "private_key": ("private_key_path", "private_key_env"),
    "refresh_token": (None, "refresh_token_env"),
    "session_id": (None, "session_id_env"),
    "instance_url": ("instance_url", "instance_url_env"),
    "ca_cert": ("ca_cert", "ca_cert_env"),
}


def credential_sources(sf: SalesforceConfig) -> dict[str, tuple[str | None, str | None]]:
    """Per credentials field: (literal value, env var name) from the YAML, for the resource."""
    out: dict[str, tuple[str | None, str | None]] = {}
    for field, (literal_key, env_key) in _CRED_FIELDS.items():
        literal = getattr(sf, literal_key) if literal_key else None
        env = getattr(sf, env_key) if env_key else None
        if literal is not None or env is not None:
            out[field] = (literal, env)
    return out


def resolve_credentials(
    sf: SalesforceConfig,
    *,
    environ: Mapping[str, str] | None = None,
    file: str = PROJECT_FILE,
) -> SalesforceCredentials:
    """Build ``SalesforceCredentials`` from the config, reading secrets from ``environ``.

    An env var named in the YAML but unset is a ``ConfigError`` naming the variable.
    """
    from sf_activations.salesforce.connection import SalesforceCredentials

    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    problems: list[ConfigProblem] = []
    for field, (literal, env_name) in credential_sources(sf).items():
        # A variable named in the YAML is required, as dg.EnvVar makes it for Dagster runs.
        if env_name is not None and env_name in env:
            values[field] = env[env_name]
        elif env_name is None:
            values[field] = literal
        else:
            problems.append(
                ConfigProblem(
                    file,
                    f"environment variable {env_name} is not set.",
                    f"Export {env_name} before running (it holds salesforce.{field}).",
                    field=f"salesforce.{_CRED_FIELDS[field][1]}",
                )
            )
    if problems:
        raise ConfigError(problems)
    return SalesforceCredentials(
        auth=sf.auth,
        sandbox=sf.sandbox,
        api_version=sf.api_version,
        **values,
    )
