-- One row per item of a Chargebee subscription's current state (the contract of
-- int_subscription_items), on either Product Catalog. 2.0: `subscription_items`, each with
-- its own `item_type` (plan, addon, charge; never the list's order). 1.0: the plan
-- (`plan_id`, `plan_quantity`, `plan_unit_price`), `addons` (recurring; a non_recurring
-- add-on is a charge) and `event_based_addons` (charges). A row takes the one path its
-- site's catalog fills. The pricing model, usage and period come from the price
-- (stg_chargebee__prices); the unit price the subscription states wins over the price's
-- (it may be overridden per subscription). Tier models carry no unit amount: their amount
-- comes from stg_chargebee__price_tiers at the item's quantity.
{% set src = source('chargebee', 'subscriptions') %}
{% set c = columns_of(src) %}
with subscriptions as (
    select
        cast(id as {{ type_text() }}) as subscription_id,
        cast(currency_code as {{ type_text() }}) as currency_code,
        cast({{ col(c, 'billing_period_unit') }} as {{ type_text() }}) as billing_period_unit,
        cast({{ col(c, 'billing_period', 'bigint') }} as integer) as billing_period,
        {{ col(c, 'subscription_items') }} as subscription_items,
        cast({{ col(c, 'plan_id') }} as {{ type_text() }}) as plan_id,
        {{ col(c, 'plan_quantity', 'bigint') }} as plan_quantity,
        {{ col(c, 'plan_unit_price', 'bigint') }} as plan_unit_price,
        {{ col(c, 'addons') }} as addons,
        {{ col(c, 'event_based_addons') }} as event_based_addons
    from {{ src }}
),

listed as (
    -- Product Catalog 2.0
    select
        s.subscription_id, s.currency_code, s.billing_period_unit, s.billing_period,
        cast({{ json_text('e.value', ['item_type']) }} as {{ type_text() }}) as item_type,
        cast({{ json_text('e.value', ['item_price_id']) }} as {{ type_text() }}) as price_id,
        cast({{ json_text('e.value', ['quantity']) }} as bigint) as quantity,
        cast({{ json_text('e.value', ['unit_price']) }} as bigint) as unit_price
    from subscriptions as s
    cross join {{ json_elements('s.subscription_items', 'e') }}
    union all
    -- Product Catalog 1.0: the plan
    select
        s.subscription_id, s.currency_code, s.billing_period_unit, s.billing_period,
        'plan', s.plan_id, s.plan_quantity, s.plan_unit_price
    from subscriptions as s
    where s.plan_id is not null
    -- Product Catalog 1.0: recurring add-ons, and add-ons charged on an event, once
    {% for column, item_type in [('addons', 'addon'), ('event_based_addons', 'charge')] %}
    union all
    select
        s.subscription_id, s.currency_code, s.billing_period_unit, s.billing_period,
        '{{ item_type }}',
        cast({{ json_text('e.value', ['id']) }} as {{ type_text() }}),
        cast({{ json_text('e.value', ['quantity']) }} as bigint),
        cast({{ json_text('e.value', ['unit_price']) }} as bigint)
    from subscriptions as s
    cross join {{ json_elements('s.' ~ column, 'e') }}
    {% endfor %}
),

priced as (
    select
        l.*,
        case when l.item_type = 'addon' and p.price_type = 'charge' then 'charge' else l.item_type end
            as conformed_type,
        p.product_id,
        coalesce(p.usage_type, 'licensed') as usage_type,
        coalesce(p.pricing_model, 'per_unit') as pricing_model,
        p.unit_amount_local as price_amount_local,
        p.package_size,
        p.{{ adapter.quote('interval') }} as price_interval,
        p.interval_count as price_interval_count
    from listed as l
    left join {{ ref('stg_chargebee__prices') }} as p
        on p.price_id = l.price_id
        and p.currency = upper(l.currency_code)
)

select
    'chargebee' as billing_system,
    subscription_id,
    item_type || ':' || price_id as item_id,
    conformed_type as item_type,
    price_id,
    product_id,
    usage_type,
    pricing_model,
    package_size,
    case when usage_type = 'licensed' then cast(coalesce(quantity, 1) as integer) end as quantity,
    cast(case when pricing_model in ('per_unit', 'flat_fee', 'package') then coalesce(
        {{ minor_to_major('unit_price', 'currency_code', 'chargebee') }}, price_amount_local
    ) end as {{ type_decimal() }}) as unit_amount_local,
    upper(currency_code) as currency,
    coalesce(price_interval, billing_period_unit) as {{ adapter.quote('interval') }},
    coalesce(price_interval_count, billing_period) as interval_count,
    cast(null as {{ type_text() }}) as package_rounding
from priced
