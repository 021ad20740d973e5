-- Recurly subscriptions in the conformed vocabulary (validation.md §1): `expires_at` is
-- when service ends (ended or scheduled), state `canceled` is a requested cancel that has
-- not ended yet, and a trial is an `active` subscription whose current period is its trial.
-- coupon_id: the first coupon applied to it, by redemption created_at then id, among its
-- subscription-level redemptions (listed on the subscription and under the account) and
-- the account-level ones attributed to it (Recurly's default level, listed only under
-- the account): each account-level redemption belongs to the subscription of its account
-- created nearest to it (a coupon is redeemed with a purchase; ties: the lowest
-- subscription id). Removed redemptions count: the coupon came with the subscription.
-- Plan, quantity and amounts are the current ones; a `pending_change` (a change
-- scheduled for the renewal) is not read. Recurly never deletes a subscription
-- (is_deleted is always false; a closed account's subscriptions have expired).
{% set src = source('recurly', 'subscriptions') %}
{% set c = columns_of(src) %}
with raw as (
    select
        id,
        account__code,
        plan__code,
        state,
        currency,
        unit_amount,
        quantity,
        created_at,
        activated_at,
        {{ col(c, 'canceled_at', type_timestamptz()) }} as canceled_at,
        {{ col(c, 'expires_at', type_timestamptz()) }} as expires_at,
        {{ col(c, 'trial_started_at', type_timestamptz()) }} as trial_started_at,
        {{ col(c, 'trial_ends_at', type_timestamptz()) }} as trial_ends_at,
        {{ col(c, 'current_period_started_at', type_timestamptz()) }} as current_period_started_at,
        {{ col(c, 'current_period_ends_at', type_timestamptz()) }} as current_period_ends_at,
        {{ col(c, 'paused_at', type_timestamptz()) }} as paused_at,
        {{ col(c, 'resume_at', type_timestamptz()) }} as resume_at,
        {{ col(c, 'coupon_redemptions') }} as coupon_redemptions
    from {{ src }}
),

own_redemptions as (
    select
        raw.id as subscription_id,
        {{ json_text('r.value', ['id']) }} as redemption_id,
        {{ json_text('r.value', ['coupon', 'code']) }} as coupon_id,
        cast({{ json_text('r.value', ['created_at']) }} as {{ type_timestamptz() }}) as created_at
    from raw
    cross join {{ json_elements('raw.coupon_redemptions', 'r') }}
),

attributed as (
    select
        raw.id as subscription_id,
        redemption.redemption_id,
        redemption.coupon_id,
        redemption.created_at,
        row_number() over (
            partition by redemption.redemption_id
            order by
                greatest(redemption.created_at, raw.created_at)
                    - least(redemption.created_at, raw.created_at),
                raw.id
        ) as nearness
    from raw
    inner join {{ ref('stg_recurly__coupon_redemptions') }} as redemption
        on redemption.customer_id = raw.account__code
        and redemption.subscription_id is null
),

applied as (
    select subscription_id, redemption_id, coupon_id, created_at from own_redemptions
    union all
    select subscription_id, redemption_id, coupon_id, created_at
    from {{ ref('stg_recurly__coupon_redemptions') }}
    where subscription_id is not null
    union all
    select subscription_id, redemption_id, coupon_id, created_at from attributed
    where nearness = 1
),

first_coupons as (
    select
        subscription_id,
        coupon_id,
        row_number() over (
            partition by subscription_id order by created_at, redemption_id
        ) as coupon_rank
    from applied
)

select
    'recurly' as billing_system,
    cast(id as {{ type_text() }}) as subscription_id,
    cast(account__code as {{ type_text() }}) as customer_id,
    case
        when state in ('expired', 'failed') then 'canceled'
        when state = 'future' then 'future'
        when state = 'canceled' then 'non_renewing'
        when state = 'paused' then 'paused'
        when trial_ends_at is not null and trial_ends_at >= current_period_ends_at then 'trialing'
        else 'active'
    end as status,
    cast(plan__code as {{ type_text() }}) as plan_id,
    cast(quantity as integer) as quantity,
    upper(currency) as currency,
    cast(unit_amount as {{ type_decimal() }}) as unit_amount_local,
    cast(null as {{ type_text() }}) as {{ adapter.quote('interval') }},
    cast(null as integer) as interval_count,
    cast(created_at as {{ type_timestamptz() }}) as created_at,
    cast(activated_at as {{ type_timestamptz() }}) as activated_at,
    cast(trial_started_at as {{ type_timestamptz() }}) as trial_start,
    cast(trial_ends_at as {{ type_timestamptz() }}) as trial_end,
    cast(current_period_started_at as {{ type_timestamptz() }}) as current_period_start,
    cast(current_period_ends_at as {{ type_timestamptz() }}) as current_period_end,
    cast(canceled_at as {{ type_timestamptz() }}) as canceled_at,
    cast(expires_at as {{ type_timestamptz() }}) as ended_at,
    cast(paused_at as {{ type_timestamptz() }}) as paused_at,
    cast(resume_at as {{ type_timestamptz() }}) as resumes_at,
    cast(first_coupons.coupon_id as {{ type_text() }}) as coupon_id,
    false as is_deleted
from raw
left join first_coupons
    on first_coupons.subscription_id = raw.id
    and first_coupons.coupon_rank = 1
