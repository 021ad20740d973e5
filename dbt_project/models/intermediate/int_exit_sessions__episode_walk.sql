-- validation.md §2: sessions per (billing_system, billing_id) ordered by started_at, then
-- session_id; an episode starts at its first session and takes every later session that
-- starts before start + window; the first at or after that opens the next episode.
-- The rule is sequential (a new episode is measured from the episode's first visit, not
-- the previous visit): macros/walk.sql folds each billing id's visit times in order into
-- its episodes' start times, with no depth limit on any engine. A visit then belongs to
-- the latest episode started at or before it, whose id is its first session's.
with ordered as (
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

starts as (
    {{ episode_starts('ordered', var('save_window_days')) }}
),

-- Visits at an episode's start time carry it (of equal times, the first by session_id
-- opens the episode and the others join it).
marked as (
    select o.*, s.episode_start as opens_at
    from ordered as o
    left join starts as s
        on s.billing_system = o.billing_system
        and s.billing_id = o.billing_id
        and s.episode_start = o.started_at
),

walked as (
    select
        session_id,
        billing_system,
        billing_id,
        visit_number,
        max(opens_at) over (
            partition by billing_system, billing_id order by visit_number
            rows between unbounded preceding and current row
        ) as episode_start
    from marked
)

select
    session_id,
    first_value(session_id) over (
        partition by billing_system, billing_id, episode_start order by visit_number
    ) as episode_id,
    visit_number,
    episode_start
from walked
