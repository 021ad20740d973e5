-- Stripe subscriptions in the conformed vocabulary (validation.md §1), read as API
-- 2026-10-28.endive sends them: currency at the top level; the billing period on the items
-- (all items of a subscription share it at this version: the earliest start and the latest
-- end over the items are taken, so a mixed period would still cover them all); the coupon
-- from the expanded `discounts` (a Discount names it in `source.coupon`). Plan, quantity
-- and amounts are the items' (stg_stripe__subscription_items). A requested cancel is
-- `cancel_at` / `cancel_at_period_end` (status unchanged until it ends), folded into the
-- normalised status. A collection pause leaves Stripe's status unchanged; only
-- `behavior = void` ("can't provide services") is a pause of service and normalised to
-- paused: `mark_uncollectible` (services offered for free: the free extension) and
-- `keep_as_draft` (free now, collected later) keep the service going, so the status stays.
-- `resumes_at` is when collection resumes, whichever the behavior. Stripe does not say
-- when a collection pause began (paused_at null).
--
-- Coupon rule: the first discount applied. The subscription's own `discounts` in their
-- order (Stripe applies them in that order), then its items' discounts in item order; a
-- subscription without any takes its customer's discount (`customer.discount`: Stripe
-- applies a customer-level discount to the invoices of every subscription that has none
-- of its own). Read here, from the raw customers, because it is Stripe's own rule; the
-- intermediate models stay system-neutral. A discount still a bare id (not expanded) names
-- no coupon. Stripe never deletes a subscription (a canceled one stays): is_deleted is
-- false. A scheduled change (`schedule`, a SubscriptionSchedule) is not read: the items
-- are what the subscription bills now.
{% set src = source('stripe', 'subscriptions') %}
{% set c = columns_of(src) %}
{% set customers = source('stripe', 'customers') %}
{% set cc = columns_of(customers) %}
with raw as (
    select
        id,
        customer,
        status,
        {{ col(c, 'currency') }} as currency,
        {{ col(c, 'items__data') }} as items_json,
        {{ col(c, 'discounts') }} as discounts_json,
        {{ col(c, 'created', 'bigint') }} as created,
        {{ col(c, 'start_date', 'bigint') }} as start_date,
        {{ col(c, 'trial_start', 'bigint') }} as trial_start,
        {{ col(c, 'trial_end', 'bigint') }} as trial_end,
        {{ col(c, 'cancel_at', 'bigint') }} as cancel_at,
        {{ col(c, 'cancel_at_period_end', 'boolean') }} as cancel_at_period_end,
        {{ col(c, 'canceled_at', 'bigint') }} as canceled_at,
        {{ col(c, 'ended_at', 'bigint') }} as ended_at,
        {{ col(c, 'pause_collection__behavior') }} as pause_behavior,
        {{ col(c, 'pause_collection__resumes_at', 'bigint') }} as pause_resumes_at
    from {{ src }}
),

items as (
    select
        raw.id,
        item.idx,
        item.value as item
    from raw
    cross join {{ json_elements('raw.items_json', 'item') }}
),

periods as (
    select
        id,
        min(cast({{ json_text('item', ['current_period_start']) }} as bigint)) as current_period_start,
        max(cast({{ json_text('item', ['current_period_end']) }} as bigint)) as current_period_end
    from items
    group by id
),

discounts as (
    select raw.id, 1 as level, 0 as item_idx, discount.idx, discount.value as discount
    from raw
    cross join {{ json_elements('raw.discounts_json', 'discount') }}
    union all
    select items.id, 2 as level, items.idx as item_idx, discount.idx, discount.value as discount
    from items
    cross join {{ json_elements(json_text('items.item', ['discounts']), 'discount') }}
),

coupons as (
    select
        id,
        {{ json_text('discount', ['source', 'coupon']) }} as coupon_id,
        row_number() over (partition by id order by level, item_idx, idx) as rank_in_subscription
    from discounts
    where {{ json_text('discount', ['source', 'coupon']) }} is not null
),

customer_coupons as (
    select
        cast(id as {{ type_text() }}) as customer_id,
        cast({{ col(cc, 'discount__source__coupon') }} as {{ type_text() }}) as coupon_id
    from {{ customers }}
)

select
    'stripe' as billing_system,
    cast(raw.id as {{ type_text() }}) as subscription_id,
    cast(raw.customer as {{ type_text() }}) as customer_id,
    case
        when raw.status in ('canceled', 'incomplete_expired') or raw.ended_at is not null then 'canceled'
        when raw.cancel_at is not null or raw.cancel_at_period_end then 'non_renewing'
        when raw.pause_behavior = 'void' or raw.status = 'paused' then 'paused'
        when raw.status = 'trialing' then 'trialing'
        when raw.status in ('past_due', 'unpaid') then raw.status
        when raw.status = 'incomplete' then 'past_due'
        else 'active'
    end as status,
    upper(cast(raw.currency as {{ type_text() }})) as currency,
    {{ from_epoch('raw.created') }} as created_at,
    {{ from_epoch('raw.start_date') }} as activated_at,
    {{ from_epoch('raw.trial_start') }} as trial_start,
    {{ from_epoch('raw.trial_end') }} as trial_end,
    {{ from_epoch('periods.current_period_start') }} as current_period_start,
    {{ from_epoch('periods.current_period_end') }} as current_period_end,
    {{ from_epoch('raw.canceled_at') }} as canceled_at,
    {{ from_epoch(
        'coalesce(raw.ended_at, raw.cancel_at, case when raw.cancel_at_period_end then periods.current_period_end end)'
    ) }} as ended_at,
    cast(null as {{ type_timestamptz() }}) as paused_at,
    {{ from_epoch('raw.pause_resumes_at') }} as resumes_at,
    cast(coalesce(coupons.coupon_id, customer_coupons.coupon_id) as {{ type_text() }}) as coupon_id,
    false as is_deleted
from raw
left join periods on periods.id = raw.id
left join coupons on coupons.id = raw.id and coupons.rank_in_subscription = 1
left join customer_coupons on customer_coupons.customer_id = cast(raw.customer as {{ type_text() }})
