-- Each recurly sync with the API's own clock at its start (validation time T).
select
    'recurly' as billing_system,
    cast(synced_at as timestamp with time zone) as synced_at,
    cast(clock as varchar) as clock
from {{ source('recurly', 'syncs') }}
