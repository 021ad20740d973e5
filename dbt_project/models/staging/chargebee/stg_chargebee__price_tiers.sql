-- One row per tier of a Chargebee tiered, volume or stairstep price (item price, plan or
-- add-on), in ascending `starting_unit` order. `ending_unit` is inclusive and absent on
-- the last tier (up_to null = no bound). A tier's `price` is per unit unless its
-- `pricing_type` says flat_fee (the tier's fixed amount) or package (per `package_size`
-- units, taken here as price ÷ package_size per unit); a stairstep tier's price is the
-- fixed amount of the whole step. Subscription-level tier overrides (`item_tiers`) are
-- not read.
with tiers as (
    select
        p.billing_system,
        p.price_id,
        p.currency,
        p.pricing_model,
        cast({{ json_text('t.value', ['starting_unit']) }} as bigint) as starting_unit,
        cast({{ json_text('t.value', ['ending_unit']) }} as bigint) as ending_unit,
        cast({{ json_text('t.value', ['price']) }} as bigint) as price,
        cast({{ json_text('t.value', ['pricing_type']) }} as varchar) as pricing_type,
        cast({{ json_text('t.value', ['package_size']) }} as bigint) as package_size
    from {{ ref('stg_chargebee__prices') }} as p
    cross join {{ json_elements('p.tiers', 't') }}
    where p.pricing_model in ('tiered', 'volume', 'stairstep')
),

amounts as (
    select
        *,
        {{ minor_to_major('price', 'currency', 'chargebee') }} as price_local
    from tiers
)

select
    billing_system,
    price_id,
    currency,
    cast(row_number() over (partition by billing_system, price_id, currency order by starting_unit) as integer)
        as tier_index,
    ending_unit as up_to,
    cast(case
        when pricing_model = 'stairstep' or pricing_type = 'flat_fee' then 0
        when pricing_type = 'package' then price_local / nullif(package_size, 0)
        else price_local
    end as decimal(38, 10)) as unit_amount_local,
    cast(case
        when pricing_model = 'stairstep' or pricing_type = 'flat_fee' then price_local
        else 0
    end as decimal(38, 10)) as flat_amount_local
from amounts
