-- One row per tier of a Chargebee tiered, volume or stairstep price (item price, plan or
-- add-on), in ascending `starting_unit` order. `ending_unit` is inclusive and absent on
-- the last tier (up_to null = no bound). A tier's `price` is per unit unless its
-- `pricing_type` says flat_fee (the tier's fixed amount) or package (per package of
-- `package_size` units: the unit amount is the package's, package_size says how many
-- units a package holds); a stairstep tier's price is the fixed amount of the whole step.
-- A subscription may override its item's tiers (`item_tiers`, Product Catalog 2.0): those
-- rows carry its subscription_id and replace the price's tiers for that subscription only
-- (rows without one are the price's own).
{% set subs = source('chargebee', 'subscriptions') %}
{% set overrides = 'item_tiers' in columns_of(subs) %}
with listed as (
    select p.billing_system, cast(null as {{ type_text() }}) as subscription_id, p.price_id, p.currency,
        p.pricing_model, t.value as tier
    from {{ ref('stg_chargebee__prices') }} as p
    cross join {{ json_elements('p.tiers', 't') }}
    where p.pricing_model in ('tiered', 'volume', 'stairstep')
    {% if overrides %}
    union all
    select p.billing_system, cast(s.id as {{ type_text() }}), p.price_id, p.currency, p.pricing_model, t.value
    from {{ subs }} as s
    cross join {{ json_elements('s.item_tiers', 't') }}
    inner join {{ ref('stg_chargebee__prices') }} as p
        on p.price_id = {{ json_text('t.value', ['item_price_id']) }}
        and p.currency = upper(s.currency_code)
    where p.pricing_model in ('tiered', 'volume', 'stairstep')
    {% endif %}
),

tiers as (
    select
        billing_system,
        subscription_id,
        price_id,
        currency,
        pricing_model,
        cast({{ json_text('tier', ['starting_unit']) }} as bigint) as starting_unit,
        cast({{ json_text('tier', ['ending_unit']) }} as bigint) as ending_unit,
        cast({{ json_text('tier', ['price']) }} as bigint) as price,
        cast({{ json_text('tier', ['pricing_type']) }} as {{ type_text() }}) as pricing_type,
        cast({{ json_text('tier', ['package_size']) }} as bigint) as package_size
    from listed
),

amounts as (
    select
        *,
        {{ minor_to_major('price', 'currency', 'chargebee') }} as price_local
    from tiers
)

select
    billing_system,
    subscription_id,
    price_id,
    currency,
    cast(row_number() over (
        partition by billing_system, subscription_id, price_id, currency order by starting_unit
    ) as integer) as tier_index,
    ending_unit as up_to,
    cast(case
        when pricing_model = 'stairstep' or pricing_type = 'flat_fee' then 0
        else price_local
    end as {{ type_decimal() }}) as unit_amount_local,
    cast(case
        when pricing_model = 'stairstep' or pricing_type = 'flat_fee' then price_local
        else 0
    end as {{ type_decimal() }}) as flat_amount_local,
    cast(case when pricing_type = 'package' then package_size end as integer) as package_size
from amounts
