-- Each chargebee sync with the API's own clock at its start (validation time T).
select
    'chargebee' as billing_system,
    cast(synced_at as timestamp with time zone) as synced_at,
    cast(clock as varchar) as clock
from {{ source('chargebee', 'syncs') }}
