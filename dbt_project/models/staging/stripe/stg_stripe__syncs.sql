-- Each stripe sync with the API's own clock at its start (validation time T).
select
    'stripe' as billing_system,
    cast(synced_at as timestamp with time zone) as synced_at,
    cast(clock as varchar) as clock
from {{ source('stripe', 'syncs') }}
