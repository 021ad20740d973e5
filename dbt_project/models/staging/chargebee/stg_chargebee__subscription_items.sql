-- PLACEHOLDER until the chargebee items are read from the raw data: the subscription's one plan
-- as its only item (the contract of int_subscription_items).
select
    billing_system,
    subscription_id,
    subscription_id || ':plan' as item_id,
    'plan' as item_type,
    plan_id as price_id,
    cast(null as varchar) as product_id,
    'licensed' as usage_type,
    'per_unit' as pricing_model,
    cast(null as integer) as package_size,
    quantity,
    unit_amount_local,
    currency,
    "interval",
    interval_count
from {{ ref('stg_chargebee__subscriptions') }}
