-- Chargebee item prices (Product Catalog 2.0) as plans.
select
    'chargebee' as billing_system,
    cast(id as varchar) as plan_id,
    cast(item_id as varchar) as product_id,
    upper(currency_code) as currency,
    {{ minor_to_major('price', 'currency_code', 'chargebee') }} as unit_amount_local,
    cast(period_unit as varchar) as "interval",
    cast(period as integer) as interval_count
from {{ source('chargebee', 'item_prices') }}
where not coalesce(deleted, false)
