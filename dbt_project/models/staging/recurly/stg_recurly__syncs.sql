-- Each recurly sync with the API's own clock at its start (validation time T).
select
    'recurly' as billing_system,
    cast(synced_at as {{ type_timestamptz() }}) as synced_at,
    cast(clock as {{ type_text() }}) as clock
from {{ source('recurly', 'syncs') }}
