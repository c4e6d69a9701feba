"""The one-pass fingerprint equals MD5 of the documented encoding, whatever the values."""

from __future__ import annotations

import hashlib

import polars as pl

from sf_activations.sync.fingerprint import encode_records, fingerprints, md5_hex


def test_one_pass_matches_the_documented_encoding_on_awkward_values() -> None:
    frame = pl.DataFrame(
        {
            "Name": ["é", None, "", "x,\"y'\n", "\x00z", "日本語"],
            "O'Brien__c": ["1", "2", None, "", "ü" * 3, "'; DROP TABLE t; --"],
            "Count": [1, None, 3, 4, 5, -6],
        }
    )
    fields = ["Name", "O'Brien__c", "Count"]
    fast = fingerprints(frame, fields)
    assert fast.to_list() == md5_hex(encode_records(frame, fields)).to_list()
    # The first row by hand: fields in name order, ``name NUL byte-length NUL value``.
    by_hand = "Count\x001\x001" + "Name\x002\x00é" + "O'Brien__c\x001\x001"
    assert fast[0] == hashlib.md5(by_hand.encode()).hexdigest()


def test_no_rows_and_no_fields() -> None:
    empty = pl.DataFrame({"A": []}, schema={"A": pl.String})
    assert fingerprints(empty, ["A"]).len() == 0
    two = pl.DataFrame({"A": ["x", "y"]})
    assert fingerprints(two, []).to_list() == [hashlib.md5(b"").hexdigest()] * 2


def test_fingerprints_agree_across_threads_and_calls() -> None:
    """Each thread hashes on its own cached DuckDB connection; results never mix."""
    from concurrent.futures import ThreadPoolExecutor

    frames = [
        pl.DataFrame({"Name": [f"n{t}-{i}" for i in range(300)], "Phone": [str(t)] * 300})
        for t in range(6)
    ]
    expected = [fingerprints(f, ["Name", "Phone"]).to_list() for f in frames]
    with ThreadPoolExecutor(max_workers=3) as pool:
        got = list(pool.map(lambda f: fingerprints(f, ["Name", "Phone"]).to_list(), frames * 3))
    assert got == expected * 3
    assert md5_hex(pl.Series(["a", None])).to_list() == [
        "0cc175b9c0f1b6a831c399e269772661",
        None,
    ]
