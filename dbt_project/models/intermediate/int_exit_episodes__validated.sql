-- validation.md §4–5: validation status, validated outcome and revenue per episode.
-- Saves and watch-list episodes are checked over [S, W], W = E for saves and W = T for
-- the watch list; cancels only for having ended or been canceled before the visit.
with episodes as (
    select
        e.*,
        case when e.page_outcome = 'saved' then e.save_event_at else e.validated_at end as window_end
    from {{ ref('int_exit_episodes') }} as e
),

joined as (
    select
        e.*,
        m.subscription_id,
        s.customer_id,
        s.status as subscription_status,
        s.activated_at,
        s.canceled_at as subscription_canceled_at,
        s.ended_at as subscription_ended_at,
        s.mrr as matched_mrr
    from episodes as e
    left join {{ ref('int_exit_episodes__matched') }} as m on m.episode_id = e.episode_id
    left join {{ ref('int_subscriptions') }} as s
        on s.billing_system = e.billing_system and s.subscription_id = m.subscription_id
),

statused as (
    select
        joined.*,
        case
            when subscription_id is null then 'no_match'
            when subscription_ended_at <= first_landed_at then 'expired_pre_session'
            when subscription_canceled_at < first_landed_at then 'canceled_pre_session'
            when page_outcome = 'canceled' then 'valid_cancel'
            when activated_at > first_landed_at then 'activated_post_session'
            when subscription_canceled_at >= first_landed_at and subscription_canceled_at <= window_end
                then 'invalid_save'
            when subscription_ended_at > first_landed_at and subscription_ended_at <= window_end
                then 'invalid_save'
            when subscription_status = 'unpaid' then 'invalid_save'
            else 'valid_save'
        end as validation_status
    from joined
),

outcomes as (
    select
        statused.*,
        case
            when validation_status = 'no_match'
                then case when page_outcome = 'canceled' then 'canceled' else 'unknown' end
            when validation_status in ('expired_pre_session', 'activated_post_session') then 'unknown'
            when validation_status in ('canceled_pre_session', 'invalid_save', 'valid_cancel')
                then 'canceled'
            when page_outcome = 'watch_list' then 'pending'
            else 'saved'
        end as validated_outcome
    from statused
)

select
    episode_id,
    billing_system,
    billing_id,
    first_landed_at,
    save_event_at,
    session_count,
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
    matched_mrr as mrr,
    cast(case when validated_outcome = 'saved' then matched_mrr else 0 end as {{ type_decimal() }}) as saved_mrr,
    cast(
        case when validated_outcome = 'canceled' and subscription_id is not null then matched_mrr else 0 end
    as {{ type_decimal() }}) as lost_mrr,
    validated_at
from outcomes
