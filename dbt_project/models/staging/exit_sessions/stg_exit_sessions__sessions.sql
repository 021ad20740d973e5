-- One row per visit to the cancel page, typed per validation.md §1.
select
    cast(session_id as {{ type_text() }}) as session_id,
    cast(app_id as {{ type_text() }}) as app_id,
    cast(billing_system as {{ type_text() }}) as billing_system,
    cast(billing_id as {{ type_text() }}) as billing_id,
    cast(email as {{ type_text() }}) as email,
    cast(started_at as {{ type_timestamptz() }}) as started_at,
    cast(action as {{ type_text() }}) as action,
    cast(action_at as {{ type_timestamptz() }}) as action_at,
    cast(offer_id as {{ type_text() }}) as offer_id,
    cast(offer_type as {{ type_text() }}) as offer_type,
    cast(page_id as {{ type_text() }}) as page_id,
    cast(cancel_reason as {{ type_text() }}) as cancel_reason,
    cast(custom as {{ type_text() }}) as custom
from {{ source('exit_sessions', 'exit_sessions') }}
