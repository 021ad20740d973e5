-- Recurly plans. Recurly bills in days or months: multiples of 7 days are weeks and of 12
-- months are years, so MRR uses the same factors as the other systems. A plan's price
-- is per currency; the first listed is the plan's own (subscriptions carry theirs).
select
    'recurly' as billing_system,
    cast(code as {{ type_text() }}) as plan_id,
    cast(code as {{ type_text() }}) as product_id,
    upper({{ json_text('currencies', [0, 'currency']) }}) as currency,
    cast({{ json_text('currencies', [0, 'unit_amount']) }} as {{ type_decimal() }}) as unit_amount_local,
    case
        when interval_unit = 'months' and interval_length % 12 = 0 then 'year'
        when interval_unit = 'months' then 'month'
        when interval_unit = 'days' and interval_length % 7 = 0 then 'week'
        else 'day'
    end as {{ adapter.quote('interval') }},
    cast(
        case
            when interval_unit = 'months' and interval_length % 12 = 0 then interval_length / 12
            when interval_unit = 'days' and interval_length % 7 = 0 then interval_length / 7
            else interval_length
        end
    as integer) as interval_count
from {{ source('recurly', 'plans') }}
