{% set src = source('chargebee', 'coupons') %}
{% set c = columns_of(src, required=false) %}
select
    'chargebee' as billing_system,
    cast(id as {{ type_text() }}) as coupon_id,
    cast({{ col(c, 'name') }} as {{ type_text() }}) as name,
    cast({{ col(c, 'discount_percentage', type_float()) }} as {{ type_decimal() }}) as percent_off,
    {{ minor_to_major(col(c, 'discount_amount', 'bigint'), col(c, 'currency_code'), 'chargebee') }} as amount_off_local,
    upper({{ col(c, 'currency_code') }}) as currency,
    case duration_type when 'one_time' then 'once' when 'limited_period' then 'repeating' else 'forever' end
        as duration,
    cast(coalesce({{ col(c, 'duration_month', 'bigint') }},
        case when {{ col(c, 'period_unit') }} = 'month' then {{ col(c, 'period', 'bigint') }} end) as integer)
        as duration_in_months
from {{ raw_or_empty(src, ['id', 'duration_type']) }}
