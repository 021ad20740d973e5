{% set src = source('recurly', 'coupons') %}
{% set c = columns_of(src, required=false) %}
select
    'recurly' as billing_system,
    cast(code as {{ type_text() }}) as coupon_id,
    cast({{ col(c, 'name') }} as {{ type_text() }}) as name,
    cast(case when {{ col(c, 'discount__type') }} = 'percent' then {{ col(c, 'discount__percent', type_float()) }} end
        as {{ type_decimal() }}) as percent_off,
    cast({{ json_text(col(c, 'discount__currencies'), [0, 'amount']) }} as {{ type_decimal() }}) as amount_off_local,
    upper({{ json_text(col(c, 'discount__currencies'), [0, 'currency']) }}) as currency,
    case duration when 'single_use' then 'once' when 'temporal' then 'repeating' else 'forever' end
        as duration,
    cast(case when {{ col(c, 'temporal_unit') }} = 'month' then {{ col(c, 'temporal_amount', 'bigint') }} end
        as integer) as duration_in_months
from {{ raw_or_empty(src, ['code', 'duration']) }}
