"""The Account fields the Bulk benchmarks write: ``External_Id__c`` (the key) and nine more.

Imported by the scripts beside it (run as ``python bench/<script>.py``, so this directory is
on ``sys.path``).
"""

FIELDS = (
    "External_Id__c",
    "Name",
    "Phone",
    "Website",
    "Industry",
    "BillingCity",
    "BillingState",
    "NumberOfEmployees",
    "AnnualRevenue",
    "Description",
)
"""The Salesforce fields; a model's columns are their lower-case names."""
