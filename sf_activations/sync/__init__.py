"""The sync engine: map, validate, diff, plan, execute, results and state.

Plain Python over polars frames and frozen dataclasses. It imports neither dagster nor
simple_salesforce: it talks to Salesforce through the ``SalesforcePort`` protocol.
"""
