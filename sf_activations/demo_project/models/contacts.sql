-- One row per contact; account_id is the external id of its account (the lookup key).
select
    c.contact_id,
    c.first_name,
    c.last_name,
    lower(c.email) as email,
    c.title,
    c.phone,
    c.account_id,
    a.name as account_name,
    c.updated_at
from raw_contacts as c
left join accounts as a on a.account_id = c.account_id
