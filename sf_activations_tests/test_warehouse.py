"""The DuckDB warehouse adapter: models become tables, partitions replace only their window,
reads come back through Arrow with Decimals cast, and lineage comes from the SQL."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import duckdb
import polars as pl
import pytest
from dagster_duckdb import DuckDBResource
from polars.testing import assert_frame_equal

from sf_activations.warehouse import DuckDBWarehouse, RowFilter, normalize_frame, referenced_tables


@pytest.fixture
def warehouse(tmp_path: Path) -> DuckDBWarehouse:
    wh = DuckDBWarehouse.at(str(tmp_path / "wh.duckdb"))
    wh.replace_table(
        "raw",
        pl.DataFrame(
            {
                "id": [1, 2, 3, 4],
                "day": [datetime(2024, 1, d) for d in (1, 2, 2, 3)],
                "name": ["a", "b", None, "d"],
            }
        ),
    )
    return wh


def test_materialize_model_and_read_back(warehouse: DuckDBWarehouse) -> None:
    stats = warehouse.materialize_model(
        "m", "select id, upper(name) as name from raw where id > 1;"
    )
    assert stats.rows == 3
    assert [c for c, _ in stats.columns] == ["id", "name"]
    assert_frame_equal(
        warehouse.read("m").sort("id"),
        pl.DataFrame({"id": [2, 3, 4], "name": ["B", None, "D"]}),
    )
    assert warehouse.columns("m") == ["id", "name"]


def test_time_partition_replaces_only_its_window(warehouse: DuckDBWarehouse) -> None:
    day2 = RowFilter("day", datetime(2024, 1, 2), datetime(2024, 1, 3))
    assert warehouse.materialize_model("p", "select * from raw", where=day2).rows == 2
    day3 = RowFilter("day", datetime(2024, 1, 3), datetime(2024, 1, 4))
    assert warehouse.materialize_model("p", "select * from raw", where=day3).rows == 1
    # re-running day 2 after the source changed replaces day 2 and keeps day 3
    warehouse.execute("delete from raw where id = 3")
    assert warehouse.materialize_model("p", "select * from raw", where=day2).rows == 1
    assert sorted(warehouse.read("p")["id"].to_list()) == [2, 4]
    assert warehouse.read("p", where=day3)["id"].to_list() == [4]


def test_filter_values_are_parameters_not_sql(warehouse: DuckDBWarehouse) -> None:
    # A column name with a quote is quoted, not executed.
    with pytest.raises(duckdb.BinderException):
        warehouse.read(
            "raw", where=RowFilter('day" OR 1=1 --', datetime(2024, 1, 1), datetime(2025, 1, 1))
        )


def test_decimals_become_int_float_or_exact_text(tmp_path: Path) -> None:
    wh = DuckDBWarehouse.at(str(tmp_path / "d.duckdb"))
    wh.execute(
        "create table t as select 12.50::decimal(10,2) as amount, 7::decimal(18,0) as small, "
        "123456789012345678901234::decimal(38,0) as huge"
    )
    frame = wh.read("t")
    assert frame.schema == pl.Schema({"amount": pl.Float64, "small": pl.Int64, "huge": pl.String})
    assert frame.row(0) == (12.5, 7, "123456789012345678901234")
    plain = pl.DataFrame({"x": [1]})
    assert normalize_frame(plain) is plain


def test_works_over_dagster_duckdb_resource(tmp_path: Path) -> None:
    resource = DuckDBResource(database=str(tmp_path / "r.duckdb"))
    wh = DuckDBWarehouse(resource.get_connection)
    wh.execute("create table src as select range as id from range(5)")
    assert wh.materialize_model("m", "select * from src where id % 2 = 0").rows == 3


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        ("select * from a join main.b on a.id = b.id", {"a", "b"}),
        ("with x as (select * from raw) select * from x", {"raw"}),
        ("select * from a join b using (id) -- from not_me", {"a", "b"}),
        ("select 'from nowhere' as s from \"Quoted\"", {"quoted"}),
    ],
)
def test_referenced_tables(sql: str, expected: set[str]) -> None:
    assert referenced_tables(sql) == expected
