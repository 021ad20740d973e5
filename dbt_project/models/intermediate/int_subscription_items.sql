-- Every item of every subscription, all systems, with what it bills per billing period
-- (major units, the item's currency, before discounts). One home for the pricing rules:
--   per_unit  unit amount × quantity           flat_fee  the unit amount, any quantity
--   package   unit amount × ceil(quantity ÷ package_size); floor when the price rounds
--             down (Stripe `transform_quantity.round = down`: package_rounding 'down')
--   tiered    (graduated) each tier entered bills its units at its unit amount, plus its flat amount
--   volume, stairstep   the one tier holding the quantity bills unit amount × quantity + flat amount
-- An item without its own unit amount takes its plan's (int_plans), as a Stripe item whose
-- price was not expanded would. `is_plan` marks the subscription's plan: of its `plan`
-- items (never an add-on or a charge), the one that bills most (ties: item_id).
{% set systems = billing_systems() %}
with items as (
    {% for system in systems %}
    select
        billing_system, subscription_id, item_id, item_type, price_id, product_id, usage_type,
        pricing_model, package_size, quantity, unit_amount_local, currency, {{ adapter.quote('interval') }},
        interval_count, package_rounding
    from {{ ref('stg_' ~ system ~ '__subscription_items') }}
    {% if not loop.last %}union all{% endif %}
    {% endfor %}
),

-- A package tier (Chargebee `pricing_type` package) bills its unit amount per package of
-- package_size units, a part package counting whole. A subscription's own tiers
-- (Chargebee `item_tiers`: tiers with a subscription_id) replace its price's.
tiers as (
    select
        billing_system,
        price_id,
        currency,
        up_to,
        subscription_id,
        package_size,
        coalesce(unit_amount_local, 0) as unit_amount_local,
        coalesce(flat_amount_local, 0) as flat_amount_local,
        coalesce(
            lag(up_to) over (
                partition by billing_system, subscription_id, price_id, currency order by tier_index
            ), 0
        ) as above
    from (
        {% for system in systems %}
        select
            billing_system, price_id, currency, tier_index, up_to, unit_amount_local, flat_amount_local,
            subscription_id, package_size
        from {{ ref('stg_' ~ system ~ '__price_tiers') }}
        {% if not loop.last %}union all{% endif %}
        {% endfor %}
    ) as all_tiers
),

-- The tiers that bill each tiered item: its subscription's own for its price when it has
-- any, else its price's. Two joins on keys, not one join with an `or`: DuckDB joins on the
-- keys the branches share (system, price, currency) and filters after, which paired every
-- item with every other subscription's own tiers of its price (rows growing with the
-- square of the account: 73 billion at 10M subscriptions, bench/bench_marts.py).
item_tiers as (
    select
        i.billing_system, i.subscription_id, i.item_id, i.pricing_model, i.quantity,
        t.up_to, t.package_size, t.unit_amount_local, t.flat_amount_local, t.above
    from items as i
    inner join tiers as t
        on t.billing_system = i.billing_system
        and t.price_id = i.price_id
        and t.currency = i.currency
        and t.subscription_id = i.subscription_id
    where i.pricing_model in ('tiered', 'volume', 'stairstep')
    union all
    select
        i.billing_system, i.subscription_id, i.item_id, i.pricing_model, i.quantity,
        t.up_to, t.package_size, t.unit_amount_local, t.flat_amount_local, t.above
    from items as i
    inner join tiers as t
        on t.billing_system = i.billing_system
        and t.price_id = i.price_id
        and t.currency = i.currency
        and t.subscription_id is null
    where i.pricing_model in ('tiered', 'volume', 'stairstep')
        and not exists (
            select 1 from tiers as own
            where own.billing_system = i.billing_system
                and own.subscription_id = i.subscription_id
                and own.price_id = i.price_id
        )
),

-- Units each tier bills: for a graduated tier the units within it, for the volume or
-- stairstep tier holding the quantity all of them; a package tier counts whole packages.
{%- set graduated_units = 'least(quantity, coalesce(up_to, quantity)) - above' %}
{%- set graduated_count %}
    case
        when package_size is null then {{ graduated_units }}
        else ceil(cast({{ graduated_units }} as {{ type_decimal() }}) / package_size)
    end
{%- endset %}
{%- set volume_count %}
    case
        when package_size is null then quantity
        else ceil(cast(quantity as {{ type_decimal() }}) / package_size)
    end
{%- endset %}
tiered_amounts as (
    select
        billing_system,
        subscription_id,
        item_id,
        sum(
            case
                when pricing_model = 'tiered' and quantity > above
                    then {{ units_amount('unit_amount_local', graduated_count, 'flat_amount_local') }}
                when pricing_model in ('volume', 'stairstep')
                    and quantity > above and (up_to is null or quantity <= up_to)
                    then {{ units_amount('unit_amount_local', volume_count, 'flat_amount_local') }}
                else 0
            end
        ) as amount_local
    from item_tiers
    group by billing_system, subscription_id, item_id
),

priced as (
    select
        i.billing_system,
        i.subscription_id,
        i.item_id,
        i.item_type,
        i.price_id,
        coalesce(i.product_id, p.product_id) as product_id,
        i.usage_type,
        i.pricing_model,
        i.quantity,
        coalesce(i.currency, p.currency) as currency,
        -- (the plan's amount only in its own currency: never another currency's number)
        coalesce(
            i.unit_amount_local,
            case
                when i.pricing_model = 'per_unit' and coalesce(i.currency, p.currency) = p.currency
                    then p.unit_amount_local
            end
        ) as unit_amount_local,
        coalesce(i.{{ adapter.quote('interval') }}, p.{{ adapter.quote('interval') }}) as {{ adapter.quote('interval') }},
        coalesce(i.interval_count, p.interval_count) as interval_count,
        i.package_size,
        i.package_rounding,
        ta.amount_local as tiered_amount_local
    from items as i
    left join {{ ref('int_plans') }} as p
        on p.billing_system = i.billing_system and p.plan_id = i.price_id
    left join tiered_amounts as ta
        on ta.billing_system = i.billing_system
        and ta.subscription_id = i.subscription_id
        and ta.item_id = i.item_id
),

{%- set packages %}
    case
        when package_rounding = 'down' then floor(cast(quantity as {{ type_decimal() }}) / package_size)
        else ceil(cast(quantity as {{ type_decimal() }}) / package_size)
    end
{%- endset %}
amounts as (
    select
        priced.*,
        cast(
            case pricing_model
                when 'per_unit' then {{ units_amount('unit_amount_local', 'quantity') }}
                when 'flat_fee' then unit_amount_local
                when 'package' then {{ units_amount('unit_amount_local', packages) }}
                else tiered_amount_local
            end
        as {{ type_decimal() }}) as amount_local
    from priced
)

select
    billing_system,
    subscription_id,
    item_id,
    item_type,
    price_id,
    product_id,
    usage_type,
    pricing_model,
    quantity,
    currency,
    unit_amount_local,
    amount_local,
    {{ adapter.quote('interval') }},
    interval_count,
    item_type = 'plan' and 1 = row_number() over (
        partition by billing_system, subscription_id, item_type = 'plan'
        order by amount_local desc nulls last, item_id
    ) as is_plan
from amounts
