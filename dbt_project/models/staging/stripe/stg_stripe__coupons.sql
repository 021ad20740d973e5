{% set src = source('stripe', 'coupons') %}
{% set c = columns_of(src, required=false) %}
select
    'stripe' as billing_system,
    cast(id as varchar) as coupon_id,
    cast({{ col(c, 'name') }} as varchar) as name,
    cast({{ col(c, 'percent_off', 'double precision') }} as decimal(38, 10)) as percent_off,
    {{ minor_to_major(col(c, 'amount_off', 'bigint'), col(c, 'currency'), 'stripe') }} as amount_off_local,
    upper({{ col(c, 'currency') }}) as currency,
    cast(duration as varchar) as duration,
    cast({{ col(c, 'duration_in_months', 'bigint') }} as integer) as duration_in_months
from {{ raw_or_empty(src, ['id', 'duration']) }}
