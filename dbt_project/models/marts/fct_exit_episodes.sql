-- One row per episode: page outcome, validation status, validated outcome and revenue
-- (validation.md §2–5, marts.md).
select
    episode_id,
    billing_system,
    billing_id,
    first_landed_at,
    save_event_at,
    cast(session_count as integer) as session_count,
    page_outcome,
    save_type,
    outcome_at,
    offer_id,
    offer_type,
    page_id,
    subscription_id,
    customer_id,
    validation_status,
    validated_outcome,
    mrr,
    saved_mrr,
    lost_mrr,
    validated_at
from {{ ref('int_exit_episodes__validated') }}
