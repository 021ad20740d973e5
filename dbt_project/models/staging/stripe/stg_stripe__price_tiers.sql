-- One row per tier of each tiered Stripe price, from `tiers` (which Stripe sends only when
-- expanded; the source lists prices with `expand[]=data.tiers`). Stripe lists tiers in
-- ascending order of `up_to`, the last one `inf` (null here); amounts in minor units, the
-- decimal variants preferred (they keep fractions of a cent). Tiers of a price's other
-- currencies (`currency_options.<code>.tiers`) are not read: a tiered price billed in
-- another currency finds no tiers in it (int_subscription_items joins them on currency)
-- and gets no amount, never the default currency's.
{% set src = source('stripe', 'prices') %}
{% set c = columns_of(src) %}
with tiers as (
    select
        p.id as price_id,
        p.currency,
        tier.idx as tier_index,
        tier.value as tier
    from {{ src }} as p
    cross join {{ json_elements(col(c, 'tiers'), 'tier') }}
)

select
    'stripe' as billing_system,
    cast(price_id as {{ type_text() }}) as price_id,
    upper(currency) as currency,
    cast(tier_index as integer) as tier_index,
    cast({{ json_text('tier', ['up_to']) }} as bigint) as up_to,
    cast({{ minor_to_major(
        'coalesce(' ~ json_text('tier', ['unit_amount_decimal']) ~ ', ' ~ json_text('tier', ['unit_amount']) ~ ')',
        'currency', 'stripe'
    ) }} as {{ type_decimal() }}) as unit_amount_local,
    cast({{ minor_to_major(
        'coalesce(' ~ json_text('tier', ['flat_amount_decimal']) ~ ', ' ~ json_text('tier', ['flat_amount']) ~ ')',
        'currency', 'stripe'
    ) }} as {{ type_decimal() }}) as flat_amount_local,
    -- A price's tiers apply to every subscription; no tier bills by the package.
    cast(null as {{ type_text() }}) as subscription_id,
    cast(null as bigint) as package_size
from tiers
