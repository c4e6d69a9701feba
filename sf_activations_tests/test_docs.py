"""The README and docs/ stay true to the code: settings, defaults, codes, metadata, behaviors, CLI.

Each test reads a doc and the code it describes, so a change to either that makes them disagree
fails here with a message saying which doc to update.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from pydantic import BaseModel

from sf_activations.config.models import (
    BEHAVIORS,
    KeyConfig,
    MappingConfig,
    ModelConfig,
    ProjectConfig,
    SalesforceConfig,
    SourceConfig,
    StateConfig,
    SyncConfig,
    TimePartitionConfig,
    WarehouseConfig,
)
from sf_activations.sync.diff import SALESFORCE_ID_COLUMN, ChangeSet
from sf_activations.sync.fingerprint import FINGERPRINT_COLUMN
from sf_activations.sync.mapping import KEY_COLUMN, REASON_TEXT, MappedColumn
from sf_activations.sync.model import ObjectDescribe
from sf_activations.sync.plan import BehaviorNotSupported, PlanContext, plan_sync
from sf_activations.sync.report import ERROR_GUIDE, SyncReport
from sf_activations.sync.spec import FieldMapping, SyncKey, SyncSpec

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
CONFIGURATION = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
ERRORS = (ROOT / "docs" / "errors.md").read_text(encoding="utf-8")


def test_readme_starts_with_the_two_commands() -> None:
    lines = README.splitlines()
    assert lines[2:6] == [
        "```bash",
        "./dev demo    # the main job: sample warehouse data synced into a local Salesforce emulator",
        "./dev test    # ruff, mypy and the whole test suite",
        "```",
    ]


def _section(doc: str, heading: str) -> str:
    """The text under ``heading`` up to the next heading of the same or a higher level."""
    level = heading.split(" ", 1)[0]
    body_start = doc.index(heading + "\n") + len(heading) + 1
    body = doc[body_start:]
    end = re.search(rf"^#{{1,{len(level)}}} ", body, flags=re.MULTILINE)
    return body[: end.start()] if end else body


def _rows(doc: str) -> dict[str, str]:
    """Table rows of ``doc`` keyed by their first cell's first `code` name."""
    rows: dict[str, str] = {}
    for line in doc.splitlines():
        match = re.match(r"^\| `([^`]+)`", line)
        if match:
            rows.setdefault(match.group(1), line)
    return rows


def _shown(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


SECTIONS: list[tuple[type[BaseModel], str, str]] = [
    (WarehouseConfig, "### warehouse", ""),
    (SalesforceConfig, "### salesforce", ""),
    (StateConfig, "### state", ""),
    (SourceConfig, "### sources", ""),
    (ModelConfig, "### models", ""),
    (TimePartitionConfig, "### models", "time_partitions."),
    (SyncConfig, "## syncs/*.yaml", ""),
    (KeyConfig, "## syncs/*.yaml", "key."),
    (MappingConfig, "## syncs/*.yaml", "mappings[]."),
]


@pytest.mark.parametrize(
    ("model", "heading", "prefix"), SECTIONS, ids=[m.__name__ for m, _, _ in SECTIONS]
)
def test_every_setting_has_a_row_with_its_default(
    model: type[BaseModel], heading: str, prefix: str
) -> None:
    rows = _rows(_section(CONFIGURATION, heading))
    for name, info in model.model_fields.items():
        key = prefix + name
        if key not in rows and any(k.startswith(key + ".") for k in rows):
            continue  # a nested section (key:) documented by its own keys (key.source, ...)
        assert key in rows, f"docs/configuration.md ({heading}) has no table row for `{key}`"
        default = info.get_default(call_default_factory=False)
        default_cell = rows[key].split("|")[3].strip()
        if info.is_required():
            assert default_cell == "required", f"docs/configuration.md: `{key}` is required"
            continue
        if default is None:
            # A derived default ("the file name", "[name]") is fine; a literal value is stale.
            assert not re.fullmatch(r"`?[\d.]+`?|`?(true|false)`?", default_cell), (
                f"docs/configuration.md: `{key}` has no default, the row shows {default_cell}"
            )
            continue
        if not isinstance(default, str | int | float | bool):
            continue
        assert _shown(default) in rows[key].replace(",", ""), (
            f"docs/configuration.md: the row of `{key}` does not show its default {default!r}"
        )


def test_top_level_sections_are_documented() -> None:
    for name in ProjectConfig.model_fields:
        assert f"### {name}" in CONFIGURATION, f"docs/configuration.md lacks a '### {name}' section"


def test_every_error_code_is_explained() -> None:
    codes = set(ERROR_GUIDE) | set(REASON_TEXT)
    missing = sorted(c for c in codes if f"`{c}`" not in ERRORS)
    assert not missing, f"docs/errors.md does not explain: {', '.join(missing)}"


def _report() -> SyncReport:
    return SyncReport(
        sync="s",
        partition="__all__",
        sobject="Account",
        records_read=0,
        invalid=0,
        unchanged=0,
        created=0,
        updated=0,
        deleted=0,
        rejected=0,
        skipped=0,
        pending_retries=0,
    )


def test_every_metadata_key_is_in_the_readme() -> None:
    from sf_activations.defs.metadata import PHASES, report_metadata

    for key in report_metadata(_report()):
        if key.startswith("sf/seconds_") and key != "sf/seconds_total":
            assert key.removeprefix("sf/seconds_") in PHASES
            continue
        assert f"`{key}`" in README, f"README.md's metadata table lacks `{key}`"
    phases = ", ".join(PHASES)
    assert phases in README, f"README.md should list the phases as: {phases}"


def _empty_changes() -> ChangeSet:
    frame = pl.DataFrame(
        schema={
            KEY_COLUMN: pl.String,
            FINGERPRINT_COLUMN: pl.String,
            SALESFORCE_ID_COLUMN: pl.String,
        }
    )
    gone = pl.DataFrame(
        schema={"key": pl.String, "fingerprint": pl.String, "salesforce_id": pl.String}
    )
    return ChangeSet(new=frame, changed=frame, retry=frame, unchanged=frame, held=frame, gone=gone)


def _builds(behavior: str) -> bool:
    key_field = "Id" if behavior in ("update_only", "delete") else "External_Id__c"
    spec = SyncSpec(
        name="s",
        source_model="m",
        sobject="Lead" if behavior.startswith("lead_or") else "Account",
        behavior=behavior,  # type: ignore[arg-type]
        key=SyncKey(source="k", target=key_field),
        mappings=(FieldMapping(source="n", target="Name"),),
    )
    key = MappedColumn(header=key_field, source="k", field=key_field, describe=None, is_key=True)
    some = ObjectDescribe("Lead", "Lead", "00Q", True, True, True, fields=())
    try:
        plan_sync(spec, _empty_changes(), PlanContext(columns=(key,), lead=some, partner=some))
    except BehaviorNotSupported:
        return False
    return True


def test_readme_behavior_table_matches_the_planners() -> None:
    rows = [line for line in README.splitlines() if line.startswith("| `") and "| built" in line]
    built_in_readme = {
        name for line in rows for name in re.findall(r"`([a-z_]+)`", line.split("|")[1])
    }
    built = {b for b in BEHAVIORS if _builds(b)}
    assert built_in_readme == built, "README.md's behavior table is stale: update it"
    not_built_rows = [line for line in README.splitlines() if "not built |" in line]
    not_built_in_readme = {
        name for line in not_built_rows for name in re.findall(r"`([a-z_]+)`", line.split("|")[1])
    }
    assert not_built_in_readme == set(BEHAVIORS) - built, (
        "README.md's behavior table is stale: update it"
    )


def test_every_cli_option_is_in_the_readme() -> None:
    from sf_activations.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    for name, subparser in sub.choices.items():  # type: ignore[union-attr]
        assert f"sf-activations {name}" in README, f"README.md lacks `sf-activations {name}`"
        for action in subparser._actions:
            for flag in action.option_strings:
                if flag.startswith("--") and flag != "--help":
                    assert flag in README, f"README.md lacks option {flag} of {name}"


@pytest.mark.parametrize("doc", ["README.md", "docs/configuration.md", "docs/errors.md"])
def test_relative_links_resolve(doc: str) -> None:
    path = ROOT / doc
    for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", path.read_text(encoding="utf-8")):
        if "://" in target:
            continue
        assert (path.parent / target).exists(), f"{doc} links to missing {target}"


def test_bench_scripts_are_listed() -> None:
    for script in sorted((ROOT / "bench").glob("*.py")):
        assert f"bench/{script.name}" in README, f"README.md's benchmarks lack {script.name}"


def test_every_sync_example_in_the_configuration_docs_loads() -> None:
    import yaml

    from sf_activations.config.models import SyncConfig

    section = CONFIGURATION.split("## syncs/*.yaml", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```yaml\n(.*?)```", section, flags=re.DOTALL)
    assert len(blocks) >= 6
    behaviors = set()
    for block in blocks:
        config = SyncConfig.model_validate(yaml.safe_load(block))
        behaviors.add(config.behavior)
    assert {"update_only", "mirror", "delete", "add", "lead_or_contact"} <= behaviors
