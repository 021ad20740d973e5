-- One row per visit to the cancel page, typed per validation.md §1.
select
    cast(session_id as varchar) as session_id,
    cast(app_id as varchar) as app_id,
    cast(billing_system as varchar) as billing_system,
    cast(billing_id as varchar) as billing_id,
    cast(email as varchar) as email,
    cast(started_at as timestamp with time zone) as started_at,
    cast(action as varchar) as action,
    cast(action_at as timestamp with time zone) as action_at,
    cast(offer_id as varchar) as offer_id,
    cast(offer_type as varchar) as offer_type,
    cast(page_id as varchar) as page_id,
    cast(cancel_reason as varchar) as cancel_reason,
    cast(custom as varchar) as custom
from {{ source('exit_sessions', 'exit_sessions') }}
