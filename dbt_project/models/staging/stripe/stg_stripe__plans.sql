-- Stripe prices as plans: amounts from minor units, the recurring interval.
{% set src = source('stripe', 'prices') %}
{% set c = columns_of(src) %}
select
    'stripe' as billing_system,
    cast(id as {{ type_text() }}) as plan_id,
    cast(product as {{ type_text() }}) as product_id,
    upper(currency) as currency,
    {{ minor_to_major(col(c, 'unit_amount', 'bigint'), 'currency', 'stripe') }} as unit_amount_local,
    cast({{ col(c, 'recurring__interval') }} as {{ type_text() }}) as {{ adapter.quote('interval') }},
    cast({{ col(c, 'recurring__interval_count', 'bigint') }} as integer) as interval_count
from {{ src }}
