"""Key-hash buckets: a static partition set where a record never moves between buckets.

The bucket of a key is the first 8 hex digits of the MD5 of its UTF-8 text, as an unsigned
32-bit integer, modulo the bucket count. MD5 is fixed by RFC 1321, so the bucket is the same in
every process, on every machine and under every polars or DuckDB release.
"""

from __future__ import annotations

import polars as pl

from sf_activations.sync.fingerprint import md5_hex


def bucket_of(keys: pl.Series, buckets: int) -> pl.Series:
    """The bucket number (0 .. buckets-1, UInt32) of each key; null keys get null."""
    if buckets < 1:
        msg = f"buckets must be at least 1, got {buckets}"
        raise ValueError(msg)
    hexes = md5_hex(keys.cast(pl.String))
    first = hexes.str.slice(0, 8).str.to_integer(base=16, dtype=pl.UInt64)
    return (first % buckets).cast(pl.UInt32).alias("bucket")


def bucket_partition_keys(buckets: int) -> list[str]:
    """The partition keys of ``buckets`` hash buckets: ``["b00", "b01", ...]``."""
    if buckets < 1:
        msg = f"buckets must be at least 1, got {buckets}"
        raise ValueError(msg)
    width = max(2, len(str(buckets - 1)))
    return [f"b{i:0{width}d}" for i in range(buckets)]


def bucket_index(partition_key: str) -> int:
    """The bucket number of a partition key made by ``bucket_partition_keys`` (``"b07"`` -> 7)."""
    if not partition_key.startswith("b") or not partition_key[1:].isdigit():
        msg = f"{partition_key!r} is not a bucket partition key (expected b00, b01, ...)"
        raise ValueError(msg)
    return int(partition_key[1:])


def filter_bucket(
    frame: pl.DataFrame, key_column: str, partition_key: str, buckets: int
) -> pl.DataFrame:
    """The rows of ``frame`` whose key falls in the bucket named ``partition_key``."""
    wanted = bucket_index(partition_key)
    mask = bucket_of(frame.get_column(key_column), buckets) == wanted
    return frame.filter(mask.fill_null(False))
