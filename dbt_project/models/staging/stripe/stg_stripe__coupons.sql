{% set src = source('stripe', 'coupons') %}
{% set c = columns_of(src, required=false) %}
select
    'stripe' as billing_system,
    cast(id as {{ type_text() }}) as coupon_id,
    cast({{ col(c, 'name') }} as {{ type_text() }}) as name,
    cast({{ col(c, 'percent_off', type_float()) }} as {{ type_decimal() }}) as percent_off,
    {{ minor_to_major(col(c, 'amount_off', 'bigint'), col(c, 'currency'), 'stripe') }} as amount_off_local,
    upper({{ col(c, 'currency') }}) as currency,
    cast(duration as {{ type_text() }}) as duration,
    cast({{ col(c, 'duration_in_months', 'bigint') }} as integer) as duration_in_months
from {{ raw_or_empty(src, ['id', 'duration']) }}
