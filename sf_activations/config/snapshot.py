"""The describe snapshot: the last describe() of each Salesforce object, kept next to the state.

Loading a project must not need the network (``dagster dev``, CI and ``definitions validate``
load it offline, and a slow org must not break the UI). Yet a sync that maps a read-only field
or names a field the object lacks should fail when the definitions load, not halfway through a
run. The snapshot reconciles the two: every sync run and every ``sf-activations check`` store
the describes they fetched, one JSON file per object under ``<state dir>/describe/`` with the
fetch time, and ``build_definitions`` checks every sync against it when it exists. With no
snapshot (a fresh clone, CI) the definitions load unchecked and the same checks run at the start
of each sync asset's run.

A snapshot can be stale: a field created in Salesforce after the last fetch still looks unknown.
Every message says so and names the command that refreshes it (``sf-activations check
--refresh``).
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sf_activations.config.errors import ConfigProblem
from sf_activations.config.loader import with_lines
from sf_activations.sync.model import FieldDescribe, ObjectDescribe
from sf_activations.sync.spec import PARTNER_OBJECTS, SyncSpec

SNAPSHOT_DIR = "describe"
REFRESH_COMMAND = "sf-activations check --refresh"
_FORMAT = 1
_SAFE_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")


@dataclass(frozen=True, slots=True)
class SnapshotEntry:
    """One object's stored describe, or the record that Salesforce did not know the object."""

    sobject: str
    fetched_at: datetime
    describe: ObjectDescribe | None  # None: Salesforce answered that the object does not exist
    error: str | None = None
    instance_url: str | None = None


def snapshot_dir(state_path: str | os.PathLike[str]) -> Path:
    """``<dir of the state file>/describe``: the snapshot lives with the state it belongs to."""
    return Path(state_path).parent / SNAPSHOT_DIR


def describe_to_api(describe: ObjectDescribe) -> dict[str, Any]:
    """The describe as the API's JSON (the subset ``ObjectDescribe.from_api`` reads back)."""
    return {
        "name": describe.name,
        "label": describe.label,
        "keyPrefix": describe.key_prefix,
        "createable": describe.createable,
        "updateable": describe.updateable,
        "deletable": describe.deletable,
        "fields": [_field_to_api(f) for f in describe.fields],
    }


def _field_to_api(f: FieldDescribe) -> dict[str, Any]:
    return {
        "name": f.name,
        "label": f.label,
        "type": f.type,
        "length": f.length,
        "precision": f.precision,
        "scale": f.scale,
        "externalId": f.external_id,
        "unique": f.unique,
        "caseSensitive": f.case_sensitive,
        "idLookup": f.id_lookup,
        "filterable": f.filterable,
        "createable": f.createable,
        "updateable": f.updateable,
        "nillable": f.nillable,
        "defaultedOnCreate": f.defaulted_on_create,
        "calculated": f.calculated,
        "restrictedPicklist": f.restricted_picklist,
        "picklistValues": [{"value": v, "active": True} for v in f.picklist_values],
        "referenceTo": list(f.reference_to),
        "relationshipName": f.relationship_name,
    }


def _file_of(directory: Path, sobject: str) -> Path:
    # Object API names are letters, digits and _; anything else must not become a path.
    if not _SAFE_NAME.match(sobject):
        msg = f"'{sobject}' is not a Salesforce object API name; not storing its describe"
        raise ValueError(msg)
    return directory / f"{sobject.lower()}.json"


def _write_atomic(path: Path, payload: Mapping[str, Any]) -> None:
    # Parallel partition runs store the same object at once: write aside, then rename.
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump(payload, out, indent=1, sort_keys=True)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def save_describe(
    directory: str | os.PathLike[str],
    describe: ObjectDescribe,
    *,
    instance_url: str | None = None,
    fetched_at: datetime | None = None,
) -> Path:
    """Store one object's describe (replacing the older one); returns the file written."""
    path = _file_of(Path(directory), describe.name)
    _write_atomic(
        path,
        {
            "format": _FORMAT,
            "object": describe.name,
            "fetched_at": (fetched_at or _now()).isoformat(),
            "instance_url": instance_url,
            "describe": describe_to_api(describe),
        },
    )
    return path


def save_missing(
    directory: str | os.PathLike[str],
    sobject: str,
    error: str,
    *,
    instance_url: str | None = None,
    fetched_at: datetime | None = None,
) -> Path:
    """Record that Salesforce does not know ``sobject`` (so loading can say so offline)."""
    path = _file_of(Path(directory), sobject)
    _write_atomic(
        path,
        {
            "format": _FORMAT,
            "object": sobject,
            "fetched_at": (fetched_at or _now()).isoformat(),
            "instance_url": instance_url,
            "missing": True,
            "error": error,
        },
    )
    return path


def load_snapshot(directory: str | os.PathLike[str]) -> dict[str, SnapshotEntry]:
    """Every stored object, by lower-cased API name. No directory: an empty mapping.

    A file that cannot be read (hand-edited, from an older format) is ignored rather than
    failing the load: the snapshot is a cache, the run's own describe check still applies.
    """
    root = Path(directory)
    if not root.is_dir():
        return {}
    out: dict[str, SnapshotEntry] = {}
    for path in sorted(root.glob("*.json")):
        entry = _read_entry(path)
        if entry is not None:
            out[entry.sobject.lower()] = entry
    return out


def _read_entry(path: Path) -> SnapshotEntry | None:
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(raw, dict) or raw.get("format") != _FORMAT:
            return None
        fetched = datetime.fromisoformat(str(raw["fetched_at"]))
        sobject = str(raw["object"])
        instance = raw.get("instance_url")
        if raw.get("missing"):
            return SnapshotEntry(sobject, fetched, None, str(raw.get("error") or ""), instance)
        return SnapshotEntry(
            sobject, fetched, ObjectDescribe.from_api(raw["describe"]), None, instance
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None


def remove_others(directory: str | os.PathLike[str], keep: Iterable[str]) -> list[str]:
    """Delete stored objects not in ``keep`` (objects no sync uses any more); returns them."""
    root = Path(directory)
    wanted = {k.lower() for k in keep}
    removed = []
    for path in sorted(root.glob("*.json")) if root.is_dir() else []:
        if path.stem not in wanted:
            path.unlink(missing_ok=True)
            removed.append(path.stem)
    return removed


def objects_needed(spec: SyncSpec, describe: ObjectDescribe | None = None) -> list[str]:
    """The sync's object, a multi-destination sync's second object (Contact or Account) and,
    once the describe is known, the parents its lookups point at."""
    names = [spec.sobject]
    partner = PARTNER_OBJECTS.get(spec.behavior)
    if partner is not None and partner not in names:
        names.append(partner)
    if describe is not None:
        for m in spec.mappings:
            f = describe.field(m.target) if m.lookup_field else None
            if f is not None:
                names += [p for p in f.reference_to if p not in names]
    return names


def snapshot_problems(
    specs: Iterable[SyncSpec], snapshot: Mapping[str, SnapshotEntry]
) -> list[ConfigProblem]:
    """Each sync checked against the stored describes; syncs whose object is not stored pass.

    Messages name the file, the sync, the field (``mappings[i].target``, ``key.target``,
    ``object``), the problem, the fix, and when the describe was taken.
    """
    problems: list[ConfigProblem] = []
    for spec in specs:
        entry = snapshot.get(spec.sobject.lower())
        if entry is None:
            continue
        taken = f"describe of {entry.sobject} taken {entry.fetched_at:%Y-%m-%d %H:%M} UTC"
        refresh = (
            f"if you just changed {entry.sobject} in Salesforce, run `{REFRESH_COMMAND} "
            f"--project {_project_of(spec)}` to refresh the stored describe ({taken})."
        )
        if entry.describe is None:
            problems.append(
                ConfigProblem(
                    spec.source_file,
                    f"Salesforce has no object '{spec.sobject}' that the API user can see "
                    f"({entry.error or 'NOT_FOUND'}).",
                    "Check `object:` (the API name, e.g. Account or Invoice__c; custom objects "
                    f"end in __c) and the user's object permissions; {refresh}",
                    sync=spec.name,
                    field="object",
                )
            )
            continue
        parents = {
            e.sobject: e.describe
            for e in snapshot.values()
            if e.describe is not None and e.sobject.lower() != spec.sobject.lower()
        }
        problems += describe_problems(
            spec,
            entry.describe,
            parents=parents,
            fix=f"Edit {Path(spec.source_file).name} as said above, or {refresh}",
        )
    return with_lines(problems)


def describe_problems(
    spec: SyncSpec,
    describe: ObjectDescribe,
    *,
    parents: Mapping[str, ObjectDescribe] | None = None,
    fix: str = "",
) -> list[ConfigProblem]:
    """The engine's ``validate_spec`` findings as ``ConfigProblem``s that point at a setting."""
    from sf_activations.sync.mapping import validate_spec

    where = f"sync {spec.name!r}" + (f" ({spec.source_file})" if spec.source_file else "")
    problems = [
        ConfigProblem(
            spec.source_file,
            text.removeprefix(f"{where}: "),
            fix,
            sync=spec.name,
            field=_field_of(spec, text),
        )
        for text in validate_spec(spec, describe, parents=parents)
    ]
    return with_lines(problems)


def _project_of(spec: SyncSpec) -> str:
    # syncs/<name>.yaml lives in the project folder.
    return str(Path(spec.source_file).parent.parent) if spec.source_file else "."


def _field_of(spec: SyncSpec, text: str) -> str:
    """Which setting of the sync file a ``validate_spec`` message is about."""
    low = text.lower()
    for i, m in enumerate(spec.mappings):
        if f"mapping {m.source!r} -> ".lower() in low and m.target.lower() in low:
            lookup = m.lookup_field is not None and ("look up" in low or "lookup" in low)
            return f"mappings[{i}].lookup" if lookup else f"mappings[{i}].target"
    if "key field" in low:
        return "key.target"
    if "is required to create" in low:
        return "mappings"
    return "object"
