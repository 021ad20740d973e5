-- One row per item of each Recurly subscription, in the contract of int_subscription_items:
-- the plan ('plan': the subscription's own unit_amount × quantity, per unit) and each of its
-- add-ons ('addon', from `add_ons`, with their own pricing). An add-on is per unit
-- (`tier_type` flat or absent) or tiered/volume/stairstep (its tiers in
-- stg_recurly__price_tiers); a usage add-on (`add_on_type` usage) is metered and has no
-- quantity. An add-on's price_id is the subscription add-on's own `id`: add-on codes are
-- unique only within a plan, and a subscription may override its add-on's tiers, so its
-- tiers are its own. product_id is the add-on's code (the plan's code for the plan item).
-- Expired add-ons (`expired_at` set) are left out. Add-ons bill on the plan's interval,
-- which comes from stg_recurly__plans (days/months folded into day/week/month/year there).
{% set src = source('recurly', 'subscriptions') %}
{% set c = columns_of(src) %}
with subscriptions as (
    select
        s.id,
        s.plan__code,
        s.currency,
        s.quantity,
        s.unit_amount,
        {{ col(c, 'add_ons') }} as add_ons
    from {{ src }} as s
),

plan_items as (
    select
        id as subscription_id,
        id || ':plan' as item_id,
        'plan' as item_type,
        plan__code as price_id,
        plan__code as product_id,
        'licensed' as usage_type,
        'per_unit' as pricing_model,
        cast(quantity as integer) as quantity,
        cast(unit_amount as {{ type_decimal() }}) as unit_amount_local,
        plan__code,
        currency
    from subscriptions
),

add_ons as (
    select
        s.id as subscription_id,
        s.plan__code,
        s.currency,
        {{ json_text('a.value', ['id']) }} as add_on_id,
        {{ json_text('a.value', ['add_on', 'code']) }} as add_on_code,
        {{ json_text('a.value', ['add_on', 'add_on_type']) }} as add_on_type,
        coalesce({{ json_text('a.value', ['tier_type']) }}, 'flat') as tier_type,
        cast({{ json_text('a.value', ['quantity']) }} as integer) as quantity,
        coalesce(
            {{ json_text('a.value', ['unit_amount_decimal']) }},
            {{ json_text('a.value', ['unit_amount']) }}
        ) as unit_amount,
        {{ json_text('a.value', ['expired_at']) }} as expired_at
    from subscriptions as s
    cross join {{ json_elements('s.add_ons', 'a') }}
),

add_on_items as (
    select
        subscription_id,
        add_on_id as item_id,
        'addon' as item_type,
        add_on_id as price_id,
        add_on_code as product_id,
        case when add_on_type = 'usage' then 'metered' else 'licensed' end as usage_type,
        case when tier_type = 'flat' then 'per_unit' else tier_type end as pricing_model,
        case when add_on_type = 'usage' then null else quantity end as quantity,
        case when tier_type = 'flat' then cast(unit_amount as {{ type_decimal() }}) end
            as unit_amount_local,
        plan__code,
        currency
    from add_ons
    where expired_at is null
),

items as (
    select * from plan_items
    union all
    select * from add_on_items
)

select
    'recurly' as billing_system,
    cast(items.subscription_id as {{ type_text() }}) as subscription_id,
    cast(items.item_id as {{ type_text() }}) as item_id,
    items.item_type,
    cast(items.price_id as {{ type_text() }}) as price_id,
    cast(items.product_id as {{ type_text() }}) as product_id,
    items.usage_type,
    items.pricing_model,
    cast(null as integer) as package_size,
    items.quantity,
    items.unit_amount_local,
    upper(items.currency) as currency,
    plans.{{ adapter.quote('interval') }},
    plans.interval_count,
    cast(null as {{ type_text() }}) as package_rounding
from items
left join {{ ref('stg_recurly__plans') }} as plans on plans.plan_id = items.plan__code
