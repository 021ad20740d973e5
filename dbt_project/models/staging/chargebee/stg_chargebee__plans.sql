-- Chargebee prices as plans, on either Product Catalog (see stg_chargebee__prices).
select
    billing_system,
    price_id as plan_id,
    product_id,
    currency,
    unit_amount_local,
    {{ adapter.quote('interval') }},
    interval_count
from {{ ref('stg_chargebee__prices') }}
