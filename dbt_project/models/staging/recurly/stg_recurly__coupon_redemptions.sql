-- Recurly coupon redemptions of both levels, as listed under each account: `subscription_id`
-- is null for an account-level redemption (Recurly's default), which discounts every charge
-- of the account and is never listed on a subscription. Empty until the first load that
-- found a redemption has created the raw table.
{% set src = source('recurly', 'coupon_redemptions') %}
{% if relation_exists(src) %}
{% set c = columns_of(src) %}
select
    'recurly' as billing_system,
    cast(id as varchar) as redemption_id,
    cast(account__code as varchar) as customer_id,
    cast(coupon__code as varchar) as coupon_id,
    cast({{ col(c, 'subscription_id') }} as varchar) as subscription_id,
    cast(state as varchar) as state,
    cast(created_at as timestamp with time zone) as created_at,
    cast({{ col(c, 'removed_at', 'timestamp with time zone') }} as timestamp with time zone) as removed_at
from {{ src }}
{% else %}
select
    'recurly' as billing_system,
    cast(null as varchar) as redemption_id,
    cast(null as varchar) as customer_id,
    cast(null as varchar) as coupon_id,
    cast(null as varchar) as subscription_id,
    cast(null as varchar) as state,
    cast(null as timestamp with time zone) as created_at,
    cast(null as timestamp with time zone) as removed_at
where 1 = 0
{% endif %}
