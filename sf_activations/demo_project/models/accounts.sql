-- One row per customer account. Deleted accounts never reach Salesforce.
select
    account_id,
    trim(name) as name,
    industry,
    tier,
    annual_revenue,
    employees,
    website,
    billing_city,
    billing_country,
    updated_at
from raw_accounts
where not is_deleted
