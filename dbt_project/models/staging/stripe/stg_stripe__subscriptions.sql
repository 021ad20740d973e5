-- Stripe subscriptions in the conformed vocabulary (validation.md §1). A pause is
-- `pause_collection` (status unchanged), a requested cancel is `cancel_at` /
-- `cancel_at_period_end` (status unchanged until it ends): both are folded into the
-- normalised status. Stripe does not say when a collection pause began (paused_at null).
{% set src = source('stripe', 'subscriptions') %}
{% set c = columns_of(src) %}
with raw as (
    select
        id,
        customer,
        status,
        {{ col(c, 'plan__id') }} as plan_id,
        {{ col(c, 'plan__amount', 'bigint') }} as plan_amount,
        {{ col(c, 'plan__currency') }} as plan_currency,
        {{ col(c, 'plan__interval') }} as plan_interval,
        {{ col(c, 'plan__interval_count', 'bigint') }} as plan_interval_count,
        {{ col(c, 'quantity', 'bigint') }} as quantity,
        {{ col(c, 'created', 'bigint') }} as created,
        {{ col(c, 'start_date', 'bigint') }} as start_date,
        {{ col(c, 'trial_start', 'bigint') }} as trial_start,
        {{ col(c, 'trial_end', 'bigint') }} as trial_end,
        {{ col(c, 'current_period_start', 'bigint') }} as current_period_start,
        {{ col(c, 'current_period_end', 'bigint') }} as current_period_end,
        {{ col(c, 'cancel_at', 'bigint') }} as cancel_at,
        {{ col(c, 'cancel_at_period_end', 'boolean') }} as cancel_at_period_end,
        {{ col(c, 'canceled_at', 'bigint') }} as canceled_at,
        {{ col(c, 'ended_at', 'bigint') }} as ended_at,
        {{ col(c, 'pause_collection__behavior') }} as pause_behavior,
        {{ col(c, 'pause_collection__resumes_at', 'bigint') }} as pause_resumes_at,
        {{ col(c, 'discount__coupon__id') }} as coupon_id
    from {{ src }}
)

select
    'stripe' as billing_system,
    cast(id as varchar) as subscription_id,
    cast(customer as varchar) as customer_id,
    case
        when status in ('canceled', 'incomplete_expired') or ended_at is not null then 'canceled'
        when cancel_at is not null or cancel_at_period_end then 'non_renewing'
        when pause_behavior is not null or status = 'paused' then 'paused'
        when status = 'trialing' then 'trialing'
        when status in ('past_due', 'unpaid') then status
        when status = 'incomplete' then 'past_due'
        else 'active'
    end as status,
    cast(plan_id as varchar) as plan_id,
    cast(quantity as integer) as quantity,
    upper(plan_currency) as currency,
    {{ minor_to_major('plan_amount', 'plan_currency', 'stripe') }} as unit_amount_local,
    cast(plan_interval as varchar) as "interval",
    cast(plan_interval_count as integer) as interval_count,
    {{ from_epoch('created') }} as created_at,
    {{ from_epoch('start_date') }} as activated_at,
    {{ from_epoch('trial_start') }} as trial_start,
    {{ from_epoch('trial_end') }} as trial_end,
    {{ from_epoch('current_period_start') }} as current_period_start,
    {{ from_epoch('current_period_end') }} as current_period_end,
    {{ from_epoch('canceled_at') }} as canceled_at,
    {{ from_epoch(
        'coalesce(ended_at, cancel_at, case when cancel_at_period_end then current_period_end end)'
    ) }} as ended_at,
    cast(null as timestamp with time zone) as paused_at,
    {{ from_epoch('pause_resumes_at') }} as resumes_at,
    cast(coupon_id as varchar) as coupon_id
from raw
