-- Chargebee subscriptions in the conformed vocabulary (validation.md §1), on either Product
-- Catalog: activated_at is when service started (`started_at`, or `start_date` while
-- future; Chargebee's own `activated_at` is the end of a trial), a requested cancel is
-- `cancel_schedule_created_at` (else `cancelled_at` once cancelled) and service ends at
-- `cancelled_at`. A `transferred` subscription (moved to another business entity) is
-- canceled here, its service ending when it was transferred: Chargebee sends no
-- cancelled_at for it, so that is its last change (`updated_at`). Deleted subscriptions
-- are kept (is_deleted). The coupon is the first of `coupons[]`. Plan, quantity and
-- amounts are the items' (stg_chargebee__subscription_items: the current items, never a
-- scheduled change); the billing period is the subscription's.
{% set src = source('chargebee', 'subscriptions') %}
{% set c = columns_of(src) %}
with raw as (
    select
        id,
        customer_id,
        status,
        currency_code,
        {{ col(c, 'billing_period', 'bigint') }} as billing_period,
        {{ col(c, 'billing_period_unit') }} as billing_period_unit,
        {{ col(c, 'created_at', 'bigint') }} as created_at,
        {{ col(c, 'started_at', 'bigint') }} as started_at,
        {{ col(c, 'start_date', 'bigint') }} as start_date,
        {{ col(c, 'trial_start', 'bigint') }} as trial_start,
        {{ col(c, 'trial_end', 'bigint') }} as trial_end,
        {{ col(c, 'current_term_start', 'bigint') }} as current_term_start,
        {{ col(c, 'current_term_end', 'bigint') }} as current_term_end,
        {{ col(c, 'cancelled_at', 'bigint') }} as cancelled_at,
        {{ col(c, 'cancel_schedule_created_at', 'bigint') }} as cancel_schedule_created_at,
        {{ col(c, 'updated_at', 'bigint') }} as updated_at,
        {{ col(c, 'pause_date', 'bigint') }} as pause_date,
        {{ col(c, 'resume_date', 'bigint') }} as resume_date,
        {{ col(c, 'coupons') }} as coupons,
        {{ col(c, 'coupon') }} as coupon,
        {{ col(c, 'deleted', 'boolean') }} as deleted
    from {{ src }}
)

select
    'chargebee' as billing_system,
    cast(id as {{ type_text() }}) as subscription_id,
    cast(customer_id as {{ type_text() }}) as customer_id,
    case status
        when 'in_trial' then 'trialing'
        when 'cancelled' then 'canceled'
        when 'non_renewing' then 'non_renewing'
        when 'paused' then 'paused'
        when 'future' then 'future'
        when 'transferred' then 'canceled'
        else 'active'
    end as status,
    upper(currency_code) as currency,
    cast(billing_period_unit as {{ type_text() }}) as {{ adapter.quote('interval') }},
    cast(billing_period as integer) as interval_count,
    {{ from_epoch('created_at') }} as created_at,
    {{ from_epoch('coalesce(started_at, start_date)') }} as activated_at,
    {{ from_epoch('trial_start') }} as trial_start,
    {{ from_epoch('trial_end') }} as trial_end,
    {{ from_epoch('current_term_start') }} as current_period_start,
    {{ from_epoch('current_term_end') }} as current_period_end,
    {{ from_epoch(
        "coalesce(cancel_schedule_created_at, case when status = 'cancelled' then cancelled_at end)"
    ) }} as canceled_at,
    {{ from_epoch(
        "case when status = 'transferred' then coalesce(cancelled_at, updated_at) else cancelled_at end"
    ) }} as ended_at,
    {{ from_epoch('pause_date') }} as paused_at,
    {{ from_epoch('resume_date') }} as resumes_at,
    cast(coalesce({{ json_text('coupons', [0, 'coupon_id']) }}, coupon) as {{ type_text() }}) as coupon_id,
    coalesce(deleted, false) as is_deleted
from raw
