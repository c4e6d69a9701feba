"""SalesforceClient.lookup_ids against the emulator: short REST queries, or one Bulk scan."""

from __future__ import annotations

import urllib.parse

import pytest

from sf_activations.emulator.server import EmulatorServer
from sf_activations.salesforce import SalesforceClient
from sf_activations.salesforce.client import (
    LOOKUP_REST_QUERIES,
    LOOKUP_URL_CHARS,
    _in_queries,
    _number_literal,
)


def insert(client: SalesforceClient, sobject: str, records: list[dict[str, object]]) -> list[str]:
    outcomes = client.collection_insert(
        sobject, records, keys=[str(i) for i in range(len(records))]
    )
    assert all(o.success for o in outcomes)
    return [str(o.salesforce_id) for o in outcomes]


def test_text_lookup_matches_ignoring_case_in_one_query(client: SalesforceClient) -> None:
    ids = insert(
        client,
        "Contact",
        [
            {"LastName": "A", "Email": "Ann@Example.com"},
            {"LastName": "B", "Email": "bob@example.com"},
            {"LastName": "C", "Email": "bob@example.com"},
            {"LastName": "D", "Email": "o'hara@example.com"},
        ],
    )
    before = dict(client.api_calls())
    found = client.lookup_ids(
        "Contact", "Email", ["ann@example.com", "BOB@example.com", "o'hara@example.com", "x@y.z"]
    )
    assert sorted(found) == sorted(
        [
            (ids[0], "Ann@Example.com"),
            (ids[1], "bob@example.com"),
            (ids[2], "bob@example.com"),
            (ids[3], "o'hara@example.com"),
        ]
    )
    assert client.api_calls()["query"] - before.get("query", 0) == 1
    assert client.lookup_ids("Contact", "Email", []) == []


def test_number_lookup(client: SalesforceClient) -> None:
    ids = insert(
        client,
        "Account",
        [{"Name": "Ten", "NumberOfEmployees": 10}, {"Name": "Twenty", "NumberOfEmployees": 20}],
    )
    found = client.lookup_ids("Account", "NumberOfEmployees", ["10", "30.0"], numeric=True)
    assert found == [(ids[0], 10)]
    with pytest.raises(ValueError, match="not a number"):
        client.lookup_ids("Account", "NumberOfEmployees", ["ten"], numeric=True)


def test_many_values_are_read_by_one_bulk_scan(client: SalesforceClient) -> None:
    ids = insert(client, "Contact", [{"LastName": "P", "Email": f"P{i}@X.io"} for i in range(5)])
    wanted = [f"p{i}@x.io" for i in range(5000)]
    assert (
        len(_in_queries("SELECT Id, Email FROM Contact WHERE Email IN (", wanted, LOOKUP_URL_CHARS))
        > LOOKUP_REST_QUERIES
    )
    before = dict(client.api_calls())
    found = client.lookup_ids("Contact", "Email", wanted)
    assert sorted(found) == sorted((ids[i], f"P{i}@X.io") for i in range(5))
    used = {k: v - before.get(k, 0) for k, v in client.api_calls().items() if v != before.get(k, 0)}
    assert "query" not in used
    assert used["bulk_query"] == 1 and used["bulk_query_results"] == 1


def test_queries_stay_under_the_url_budget() -> None:
    head = "SELECT Id, Email FROM Contact WHERE Email IN ("
    literals = [f"'user{i}+tag@exämple.com'" for i in range(2000)]
    queries = _in_queries(head, literals, 4000)
    assert all(len(urllib.parse.quote_plus(q)) <= 4000 for q in queries)
    # Every literal exactly once, in order.
    inside = [lit for q in queries for lit in q[len(head) : -1].split(",")]
    assert inside == literals
    with pytest.raises(ValueError, match="too long"):
        _in_queries(head, ["'" + "x" * 5000 + "'"], 4000)


def test_number_literals_have_no_exponent() -> None:
    assert [_number_literal(v) for v in ["42", "-1.5", "1e-05", " 3 "]] == [
        "42",
        "-1.5",
        "0.00001",
        "3",
    ]
    for bad in ["nan", "inf", "", "1,5"]:
        with pytest.raises(ValueError, match="not a number"):
            _number_literal(bad)


def test_the_emulator_sees_short_urls(client: SalesforceClient, emulator: EmulatorServer) -> None:
    client.lookup_ids("Contact", "Email", [f"someone{i}@example.com" for i in range(600)])
    sent = emulator.emulator.request_log.entries(path_contains="/query")
    assert len(sent) >= 2
    # Path plus query string: far below Salesforce's 16,384 bytes for URI and headers.
    assert all(len(e.path) + len(e.query) <= LOOKUP_URL_CHARS + 100 for e in sent)
