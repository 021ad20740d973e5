-- One row per exit session, with the episode it belongs to (marts.md).
select
    s.session_id,
    w.episode_id,
    s.app_id,
    s.billing_system,
    s.billing_id,
    s.email,
    s.started_at,
    s.action,
    s.action_at,
    s.offer_id,
    s.offer_type,
    s.page_id,
    s.cancel_reason
from {{ ref('stg_exit_sessions__sessions') }} as s
inner join {{ ref('int_exit_sessions__episode_walk') }} as w using (session_id)
