-- Recurly coupon redemptions of both levels, as listed under each account: `subscription_id`
-- is null for an account-level redemption (Recurly's default), which discounts every charge
-- of the account and is never listed on a subscription. Empty until the first load that
-- found a redemption has created the raw table.
{% set src = source('recurly', 'coupon_redemptions') %}
{% set c = columns_of(src, required=false) %}
select
    'recurly' as billing_system,
    cast(id as {{ type_text() }}) as redemption_id,
    cast(account__code as {{ type_text() }}) as customer_id,
    cast(coupon__code as {{ type_text() }}) as coupon_id,
    cast({{ col(c, 'subscription_id') }} as {{ type_text() }}) as subscription_id,
    cast(state as {{ type_text() }}) as state,
    cast(created_at as {{ type_timestamptz() }}) as created_at,
    cast({{ col(c, 'removed_at', type_timestamptz()) }} as {{ type_timestamptz() }}) as removed_at
from {{ raw_or_empty(src, ['id', 'account__code', 'coupon__code', 'state', 'created_at']) }}
