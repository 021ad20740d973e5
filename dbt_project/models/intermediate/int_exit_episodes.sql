-- One row per episode (validation.md §2) with its page outcome as of the validation time
-- T of its billing system, before matching to billing (int_exit_episodes__validated).
with sessions as (
    select s.*, w.episode_id, w.episode_start
    from {{ ref('stg_exit_sessions__sessions') }} as s
    inner join {{ ref('int_exit_sessions__episode_walk') }} as w using (session_id)
),

latest_offer as (
    select episode_id, offer_id, offer_type
    from (
        select
            episode_id,
            offer_id,
            offer_type,
            row_number() over (
                partition by episode_id
                order by action_at desc nulls last, started_at desc, session_id desc
            ) as recency
        from sessions
        where action = 'offer_accepted'
    ) as ranked
    where recency = 1
),

episodes as (
    select
        episode_id,
        min(billing_system) as billing_system,
        min(billing_id) as billing_id,
        min(episode_start) as first_landed_at,
        count(*) as session_count,
        min(case when action = 'canceled' then action_at end) as canceled_at,
        max(case when action = 'offer_accepted' then 1 else 0 end) = 1 as accepted_offer,
        max(case when action = 'deflected' then 1 else 0 end) = 1 as deflected,
        min(case when session_id = episode_id then page_id end) as page_id
    from sessions
    group by episode_id
)

select
    e.episode_id,
    e.billing_system,
    e.billing_id,
    e.first_landed_at,
    {{ add_days('e.first_landed_at', var('save_window_days')) }} as save_event_at,
    e.session_count,
    case
        when e.canceled_at is not null then 'canceled'
        when {{ add_days('e.first_landed_at', var('save_window_days')) }} > t.validated_at
            then 'watch_list'
        else 'saved'
    end as page_outcome,
    case
        when e.canceled_at is not null then null
        when e.accepted_offer then 'offer'
        when e.deflected then 'deflect'
        else 'passive'
    end as save_type,
    case
        when e.canceled_at is not null then e.canceled_at
        when {{ add_days('e.first_landed_at', var('save_window_days')) }} > t.validated_at then null
        else {{ add_days('e.first_landed_at', var('save_window_days')) }}
    end as outcome_at,
    o.offer_id,
    o.offer_type,
    e.page_id,
    t.validated_at
from episodes as e
inner join {{ ref("int_validation_times") }} as t on t.billing_system = e.billing_system
left join latest_offer as o on o.episode_id = e.episode_id
