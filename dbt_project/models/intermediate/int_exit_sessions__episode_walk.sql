-- validation.md §2: sessions per (billing_system, billing_id) ordered by started_at, then
-- session_id; an episode starts at its first session and takes every later session that
-- starts before start + window; the first at or after that opens the next episode.
-- The rule is sequential (a new episode is measured from the episode's first visit, not
-- the previous visit), so it walks each billing id's visits in order.
with recursive ordered as (
    select
        session_id,
        billing_system,
        billing_id,
        started_at,
        row_number() over (
            partition by billing_system, billing_id order by started_at, session_id
        ) as visit_number
    from {{ ref('stg_exit_sessions__sessions') }}
),

walk as (
    select
        billing_system,
        billing_id,
        visit_number,
        session_id,
        session_id as episode_id,
        started_at as episode_start
    from ordered
    where visit_number = 1

    union all

    select
        o.billing_system,
        o.billing_id,
        o.visit_number,
        o.session_id,
        case
            when o.started_at >= {{ add_days('w.episode_start', var('save_window_days')) }}
                then o.session_id
            else w.episode_id
        end as episode_id,
        case
            when o.started_at >= {{ add_days('w.episode_start', var('save_window_days')) }}
                then o.started_at
            else w.episode_start
        end as episode_start
    from walk as w
    inner join ordered as o
        on o.billing_system = w.billing_system
        and o.billing_id = w.billing_id
        and o.visit_number = w.visit_number + 1
)

select session_id, episode_id, visit_number, episode_start
from walk
