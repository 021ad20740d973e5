-- One row per tier of each tiered, volume or stairstep Recurly add-on, as the subscription
-- carries it (`add_ons[].tiers`, which may override the add-on's own): price_id is the
-- subscription add-on's `id`, as in stg_recurly__subscription_items, in the subscription's
-- currency. `ending_quantity` is the tier's inclusive upper bound, absent on the last tier
-- (Recurly's 999999999 ceiling is read as no bound too). A tiered or volume tier's
-- unit_amount is per unit; a stairstep tier's is the price of the whole step, the
-- contract's flat amount. Amounts are major units (unit_amount_decimal preferred).
{% set src = source('recurly', 'subscriptions') %}
{% set c = columns_of(src) %}
with add_ons as (
    select
        s.currency,
        {{ json_text('a.value', ['id']) }} as price_id,
        {{ json_text('a.value', ['tier_type']) }} as tier_type,
        {{ json_text('a.value', ['tiers']) }} as tiers
    from {{ src }} as s
    cross join {{ json_elements(col(c, 'add_ons'), 'a') }}
),

tiers as (
    select
        add_ons.price_id,
        add_ons.currency,
        add_ons.tier_type,
        t.idx as tier_index,
        cast({{ json_text('t.value', ['ending_quantity']) }} as bigint) as ending_quantity,
        cast(coalesce(
            {{ json_text('t.value', ['unit_amount_decimal']) }},
            {{ json_text('t.value', ['unit_amount']) }}
        ) as {{ type_decimal() }}) as amount
    from add_ons
    cross join {{ json_elements('add_ons.tiers', 't') }}
    where add_ons.tier_type in ('tiered', 'volume', 'stairstep')
)

select
    'recurly' as billing_system,
    cast(price_id as {{ type_text() }}) as price_id,
    upper(currency) as currency,
    cast(tier_index as integer) as tier_index,
    case when ending_quantity < 999999999 then ending_quantity end as up_to,
    case when tier_type = 'stairstep' then cast(0 as {{ type_decimal() }}) else amount end
        as unit_amount_local,
    case when tier_type = 'stairstep' then amount else cast(0 as {{ type_decimal() }}) end
        as flat_amount_local,
    -- A price's tiers apply to every subscription; no tier bills by the package.
    cast(null as {{ type_text() }}) as subscription_id,
    cast(null as bigint) as package_size
from tiers
