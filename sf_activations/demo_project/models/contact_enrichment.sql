-- One row per email address in the data vendor's file. The address stays as the vendor wrote it
-- (the contacts sync stored it in lower case): Salesforce compares emails ignoring case.
select
    trim(email) as email,
    department,
    mobile_phone
from raw_contact_enrichment
where email is not null
