-- Recurly coupon redemptions of both levels, as listed under each account: `subscription_id`
-- is null for an account-level redemption (Recurly's default), which discounts every charge
-- of the account and is never listed on a subscription. Empty until the first load that
-- found a redemption has created the raw table.
{% set src = source('recurly', 'coupon_redemptions') %}
{% set c = columns_of(src, required=false) %}
select
    'recurly' as billing_system,
    cast(id as varchar) as redemption_id,
    cast(account__code as varchar) as customer_id,
    cast(coupon__code as varchar) as coupon_id,
    cast({{ col(c, 'subscription_id') }} as varchar) as subscription_id,
    cast(state as varchar) as state,
    cast(created_at as timestamp with time zone) as created_at,
    cast({{ col(c, 'removed_at', 'timestamp with time zone') }} as timestamp with time zone) as removed_at
from {{ raw_or_empty(src, ['id', 'account__code', 'coupon__code', 'state', 'created_at']) }}
