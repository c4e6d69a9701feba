"""The shape of a catalogue case: source rows per run, the sync spec, and the expected outcome.

A case is data, not code: each ``Step`` is one run of the engine over literal rows, with the
outcome expected for every key (synced with which stored values, set aside as invalid with
which reason, or refused by Salesforce with which code). Expectations come from Salesforce's
documented behaviour (``/work/shared/reference/salesforce-api.md``) and the product guide, not
from what the code happens to do; where they disagree the case carries an ``xfail`` naming the
filed bug.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import polars as pl

from sf_activations.sync.spec import FieldMapping, SyncKey

Transport = Literal["bulk", "rest"]
"""How the engine sends a run: one Bulk API 2.0 job, or REST sObject Collections."""

TRANSPORTS: tuple[Transport, ...] = ("bulk", "rest")


@dataclass(frozen=True, slots=True)
class Synced:
    """The record is confirmed in Salesforce (state ``synced``) and holds ``values``.

    ``values`` maps field API names to the value a SOQL query returns (None for a null field;
    floats compare approximately).
    """

    values: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Invalid:
    """The engine set the record aside before sending it (state ``pending`` with ``reason``).

    ``stored`` is what Salesforce must still hold for the key (from an earlier run); None means
    Salesforce must have no record with this key.
    """

    reason: str
    stored: Mapping[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class Rejected:
    """Salesforce refused the record (state ``pending`` with error code ``code``).

    ``rest_code`` is the code when the REST surface answers differently from Bulk (None: the
    same). ``stored`` as for ``Invalid``.
    """

    code: str
    rest_code: str | None = None
    stored: Mapping[str, Any] | None = None

    def code_for(self, transport: Transport) -> str:
        """The status code Salesforce answers on ``transport``."""
        return self.rest_code if transport == "rest" and self.rest_code else self.code


@dataclass(frozen=True, slots=True)
class Refused:
    """The record cannot be stored, and either side may say so: the engine before sending
    (state ``pending`` with ``reason``) or Salesforce (``pending`` with ``code``).

    For rules the engine may check early or leave to Salesforce (e.g. a required field left
    empty on a create); the catalogue pins the outcome, not where the check lives.
    """

    reason: str
    code: str
    stored: Mapping[str, Any] | None = None


Outcome = Synced | Invalid | Rejected | Refused


@dataclass(frozen=True, slots=True)
class Step:
    """One run of the sync over ``rows`` (column -> values), and what it must leave behind.

    ``expect`` maps a key value to its outcome after this run. ``keyless`` counts rows that
    have no usable key (null, empty or blank) by invalid reason: they cannot be tracked in
    state, so only the run's report shows them. ``total`` is the number of live records of
    the object in the org after the run (None: not checked). ``absent`` lists key values that
    must match no record. ``deleted_in_salesforce`` lists keys whose records someone deletes
    in Salesforce (to the recycle bin) just before this run.
    """

    rows: Mapping[str, Sequence[Any]]
    expect: Mapping[str, Outcome]
    schema: Mapping[str, pl.DataType | type[pl.DataType]] | None = None
    keyless: Mapping[str, int] = field(default_factory=dict)
    total: int | None = None
    absent: tuple[str, ...] = ()
    deleted_in_salesforce: tuple[str, ...] = ()

    def frame(self, placeholders: Mapping[str, str] | None = None) -> pl.DataFrame:
        """The source rows as the polars frame a warehouse would hand the engine.

        A cell equal to a key of ``placeholders`` is replaced by its value (for Ids that exist
        only once the org is running).
        """
        subs = placeholders or {}
        return pl.DataFrame(
            {
                k: [subs.get(v, v) if isinstance(v, str) else v for v in values]
                for k, values in self.rows.items()
            },
            schema=dict(self.schema) if self.schema is not None else None,
            strict=False,
        )


@dataclass(frozen=True, slots=True)
class Case:
    """One named bad or edge-case input, run end to end through engine, client and emulator.

    ``transports`` are the ways the case runs (Create Only is always a Bulk job, so it cannot
    run through REST). ``seed`` holds records (field -> value) that already exist in Salesforce before the first
    run, created by someone else (the guide's "reusing existing External ID fields").
    ``xfail`` maps a transport to the filed bug that makes the case fail there today.
    """

    name: str
    why: str  # the documented behaviour the expectation rests on
    sobject: str
    key: SyncKey
    mappings: tuple[FieldMapping, ...]
    steps: tuple[Step, ...]
    behavior: Literal["update_or_create", "create_only"] = "update_or_create"
    transports: tuple[Transport, ...] = TRANSPORTS  # Create Only always uses Bulk
    seed: tuple[Mapping[str, Any], ...] = ()
    xfail: Mapping[Transport, str] = field(default_factory=dict)
