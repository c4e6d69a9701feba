"""Unit tests of the Bulk 2.0 CSV layer: what an upload parses to and what fails a job."""

from __future__ import annotations

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from sf_activations.emulator.bulk import parse_upload
from sf_activations.emulator.errors import SalesforceError


def test_empty_cell_and_na_stay_distinct() -> None:
    header, frame = parse_upload(b'Name,Phone,"Website"\na,,#N/A\n"b,""x","",""\n', "COMMA", "LF")
    assert header == 'Name,Phone,"Website"'
    expected = pl.DataFrame(
        {"Name": ["a", 'b,"x'], "Phone": ["", ""], "Website": ["#N/A", ""]},
        schema={"Name": pl.String, "Phone": pl.String, "Website": pl.String},
    )
    assert_frame_equal(frame, expected)


def test_values_keep_spaces_and_newlines() -> None:
    _, frame = parse_upload(b'Name,Description\n  padded ,"two\nlines"\n', "COMMA", "LF")
    assert frame.row(0) == ("  padded ", "two\nlines")


def test_crlf_and_other_delimiters() -> None:
    header, frame = parse_upload(b"Name;Phone\r\nx;1\r\n", "SEMICOLON", "CRLF")
    assert header == "Name;Phone"
    assert frame.rows() == [("x", "1")]
    _, frame = parse_upload(b"Name\tPhone\nx\t1\n", "TAB", "LF")
    assert frame.columns == ["Name", "Phone"]


def test_line_ending_mismatch_fails_the_job() -> None:
    with pytest.raises(SalesforceError) as err:
        parse_upload(b"Name\r\nx\r\n", "COMMA", "LF")
    assert err.value.code == "ClientInputError"
    assert err.value.message == (
        "LineEnding is invalid on user data. Current LineEnding setting is LF"
    )


def test_duplicate_header_fails_the_job() -> None:
    with pytest.raises(SalesforceError) as err:
        parse_upload(b"Name,name\nx,y\n", "COMMA", "LF")
    assert err.value.code == "InvalidBatch"


def test_header_only_and_bom() -> None:
    header, frame = parse_upload(b"\xef\xbb\xbfName,Phone\n", "COMMA", "LF")
    assert header == "Name,Phone"
    assert frame.columns == ["Name", "Phone"] and frame.height == 0


def test_unparseable_csv_fails_the_job() -> None:
    with pytest.raises(SalesforceError) as err:
        parse_upload(b'Name,Phone\n"x"y,1\n', "COMMA", "LF")
    assert err.value.code == "ClientInputError"
