-- Recurly subscriptions in the conformed vocabulary (validation.md §1): `expires_at` is
-- when service ends (ended or scheduled), state `canceled` is a requested cancel that has
-- not ended yet, and a trial is an `active` subscription whose current period is its trial.
-- coupon_id: the subscription-level redemption listed on the subscription, else an
-- account-level redemption (Recurly's default level, listed only under the account)
-- attributed to it: each account-level redemption belongs to the subscription of its
-- account created nearest to it (a coupon is redeemed with a purchase; ties: the lowest
-- subscription id), and of several belonging to one subscription the latest created
-- (then the lowest coupon code) wins.
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
        {{ col(c, 'canceled_at', 'timestamp with time zone') }} as canceled_at,
        {{ col(c, 'expires_at', 'timestamp with time zone') }} as expires_at,
        {{ col(c, 'trial_started_at', 'timestamp with time zone') }} as trial_started_at,
        {{ col(c, 'trial_ends_at', 'timestamp with time zone') }} as trial_ends_at,
        {{ col(c, 'current_period_started_at', 'timestamp with time zone') }} as current_period_started_at,
        {{ col(c, 'current_period_ends_at', 'timestamp with time zone') }} as current_period_ends_at,
        {{ col(c, 'paused_at', 'timestamp with time zone') }} as paused_at,
        {{ col(c, 'resume_at', 'timestamp with time zone') }} as resume_at,
        {{ col(c, 'coupon_redemptions') }} as coupon_redemptions
    from {{ src }}
),

attributed as (
    select
        raw.id as redeemed_subscription_id,
        redemption.coupon_id as account_coupon_id,
        redemption.created_at as redeemed_at,
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

account_coupons as (
    select
        redeemed_subscription_id,
        account_coupon_id,
        row_number() over (
            partition by redeemed_subscription_id order by redeemed_at desc, account_coupon_id
        ) as coupon_rank
    from attributed
    where nearness = 1
)

select
    'recurly' as billing_system,
    cast(id as varchar) as subscription_id,
    cast(account__code as varchar) as customer_id,
    case
        when state in ('expired', 'failed') then 'canceled'
        when state = 'future' then 'future'
        when state = 'canceled' then 'non_renewing'
        when state = 'paused' then 'paused'
        when trial_ends_at is not null and trial_ends_at >= current_period_ends_at then 'trialing'
        else 'active'
    end as status,
    cast(plan__code as varchar) as plan_id,
    cast(quantity as integer) as quantity,
    upper(currency) as currency,
    cast(unit_amount as decimal(38, 10)) as unit_amount_local,
    cast(null as varchar) as "interval",
    cast(null as integer) as interval_count,
    cast(created_at as timestamp with time zone) as created_at,
    cast(activated_at as timestamp with time zone) as activated_at,
    cast(trial_started_at as timestamp with time zone) as trial_start,
    cast(trial_ends_at as timestamp with time zone) as trial_end,
    cast(current_period_started_at as timestamp with time zone) as current_period_start,
    cast(current_period_ends_at as timestamp with time zone) as current_period_end,
    cast(canceled_at as timestamp with time zone) as canceled_at,
    cast(expires_at as timestamp with time zone) as ended_at,
    cast(paused_at as timestamp with time zone) as paused_at,
    cast(resume_at as timestamp with time zone) as resumes_at,
    coalesce(
        cast({{ json_text('raw.coupon_redemptions', [0, 'coupon', 'code']) }} as varchar),
        account_coupons.account_coupon_id
    ) as coupon_id
from raw
left join account_coupons
    on account_coupons.redeemed_subscription_id = raw.id
    and account_coupons.coupon_rank = 1
