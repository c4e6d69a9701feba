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

import difflib
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
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
        _with_lines(problems, 0)
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
        _with_lines(problems, 0)
        raise ConfigError(problems)
    return Project(
        root=root, config=config, models=models, sources=sources, syncs=syncs, sync_after=after
    )


_FIELD_PART = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def _field_path(field: str) -> list[str | int]:
    """``mappings[1].target`` -> ``["mappings", 1, "target"]``."""
    return [int(idx) if idx else name for name, idx in _FIELD_PART.findall(field)]


def _line_of(path: Path, field: str | None) -> int | None:
    """The 1-based line where ``field`` (or its closest existing parent) is set in ``path``."""
    if not field:
        return None
    try:
        node = yaml.compose(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return None
    line: int | None = None
    for part in _field_path(field):
        if isinstance(node, yaml.MappingNode) and isinstance(part, str):
            match = next(((k, v) for k, v in node.value if k.value == part), None)
            if match is None:
                break
            line = match[0].start_mark.line + 1
            node = match[1]
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            if part >= len(node.value):
                break
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            break
    return line


def with_lines(problems: list[ConfigProblem], start: int = 0) -> list[ConfigProblem]:
    """``problems`` (in place, from ``start``) given the YAML line of their setting; returned."""
    _with_lines(problems, start)
    return problems


def _with_lines(problems: list[ConfigProblem], start: int) -> None:
    """Give the problems found since ``start`` the line of their setting, when it has one."""
    for i in range(start, len(problems)):
        p = problems[i]
        if p.line is None and p.field:
            problems[i] = replace(p, line=_line_of(Path(p.file), p.field))


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


# Fixes by pydantic error type, for messages that say what is wrong but not what to write.
_TYPE_FIXES: dict[str, str] = {
    "int_parsing": "Write a whole number (no quotes, no unit), e.g. 10000.",
    "int_type": "Write a whole number (no quotes, no unit), e.g. 10000.",
    "int_from_float": "Write a whole number, without decimals.",
    "float_parsing": "Write a number, e.g. 0.05.",
    "float_type": "Write a number, e.g. 0.05.",
    "bool_parsing": "Write true or false.",
    "bool_type": "Write true or false.",
    "string_type": "Write text (quote it if it looks like a number or a date).",
    "literal_error": "Use one of the values listed.",
    "enum": "Use one of the values listed.",
    "greater_than_equal": "Use a value in the allowed range.",
    "greater_than": "Use a value in the allowed range.",
    "less_than_equal": "Use a value in the allowed range.",
    "less_than": "Use a value in the allowed range.",
    "too_short": "Add at least one entry.",
    "list_type": "Write a list (one '- item' per line, or [a, b]).",
    "dict_type": "Write a mapping of settings (key: value lines).",
    "model_type": "Write a mapping of settings (key: value lines).",
    "model_attributes_type": "Write a mapping of settings (key: value lines).",
}


# Fixes for settings whose mistakes are predictable.
_FIELD_FIXES: dict[str, str] = {
    "max_rejected_fraction": "It is a fraction of the records read: write 0.05 for 5%.",
    "max_delete_fraction": "It is a fraction of the sync's records: write 0.5 for 50%, 1 for no limit.",
    "buckets": "Use a number of hash buckets from 1 to 1024 (e.g. 4 or 16).",
}


def _known_settings() -> set[str]:
    from sf_activations.config import models as m

    names: set[str] = set()
    for cls in (
        m.ProjectConfig,
        m.WarehouseConfig,
        m.SalesforceConfig,
        m.StateConfig,
        m.SourceConfig,
        m.ModelConfig,
        m.TimePartitionConfig,
        m.SyncConfig,
        m.KeyConfig,
        m.MappingConfig,
        m.PartitionConfig,
    ):
        names |= set(cls.model_fields)
    return names


def _shown_value(loc: tuple[Any, ...], value: Any) -> str | None:
    """The offending value as the user wrote it, unless it could be a secret or is a block."""
    names = [p for p in loc if isinstance(p, str)]
    if any(n.endswith("_env") or n in _SECRET_SETTINGS for n in names):
        return None
    if isinstance(value, bool | int | float) or (isinstance(value, str) and len(value) <= 80):
        return repr(value)
    return None


_SECRET_SETTINGS = frozenset(
    {"password", "security_token", "consumer_secret", "private_key", "refresh_token", "session_id"}
)


def _pydantic_problems(
    path: Path, exc: ValidationError, *, sync: str | None = None, prefix: str = ""
) -> list[ConfigProblem]:
    out = []
    for err in exc.errors():
        loc = ".".join(str(p) if not isinstance(p, int) else f"[{p}]" for p in err["loc"])
        loc = (prefix + loc).replace(".[", "[")
        message = err["msg"].removeprefix("Value error, ")
        kind = err["type"]
        if kind == "extra_forbidden":
            key = str(err["loc"][-1]) if err["loc"] else ""
            close = difflib.get_close_matches(key, sorted(_known_settings()), n=1)
            message = "is not a known setting."
            fix = f"Did you mean '{close[0]}'?" if close else "Remove it or check its spelling."
        elif kind == "missing":
            message = "is required."
            fix = "Add it."
        else:
            if message.startswith("Input should"):
                message = "should" + message.removeprefix("Input should")
            shown = _shown_value(err["loc"], err.get("input"))
            if shown is not None and shown not in message:
                message = f"{message} (got {shown})"
            if not message.endswith("."):
                message += "."
            fix = _FIELD_FIXES.get(str(err["loc"][-1]) if err["loc"] else "") or _TYPE_FIXES.get(
                kind, ""
            )
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
    if cfg.key.target.lower() == "id" and cfg.behavior in (
        "update_or_create",
        "create_only",
        "mirror",
        "add",
    ):
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
    if cfg.behavior == "delete" and cfg.mappings:
        problems.append(
            ConfigProblem(
                file,
                "a delete sync writes no fields, so it takes no mappings.",
                "Write mappings: [] (the key alone says which records to delete).",
                sync=name,
                field="mappings",
            )
        )
        ok = False
    elif cfg.behavior != "delete" and not cfg.mappings:
        problems.append(
            ConfigProblem(
                file,
                f"a {cfg.behavior} sync needs at least one mapping.",
                "List the columns to write under mappings (source: column, target: Field).",
                sync=name,
                field="mappings",
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
    if cfg.behavior == "mirror" and cfg.partitions.kind != "none":
        problems.append(
            ConfigProblem(
                file,
                f"a mirror sync deletes the records that left the model, so it reads the whole model in one run; with partitions: {cfg.partitions.kind} a record that moved to another partition would look deleted.",
                "Use partitions: none for this sync.",
                sync=name,
                field="partitions.kind",
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
        max_delete_fraction=cfg.max_delete_fraction,
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
        _with_lines(problems, 0)
        raise ConfigError(problems)
    return SalesforceCredentials(
        auth=sf.auth,
        sandbox=sf.sandbox,
        api_version=sf.api_version,
        **values,
    )
