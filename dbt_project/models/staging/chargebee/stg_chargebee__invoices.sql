-- Chargebee invoices: totals from minor units; paid, voided, or open (everything else).
{% set src = source('chargebee', 'invoices') %}
{% set c = columns_of(src) %}
select
    'chargebee' as billing_system,
    cast(id as varchar) as invoice_id,
    cast(customer_id as varchar) as customer_id,
    cast({{ col(c, 'subscription_id') }} as varchar) as subscription_id,
    upper(currency_code) as currency,
    {{ minor_to_major('total', 'currency_code', 'chargebee') }} as total_local,
    case status when 'paid' then 'paid' when 'voided' then 'void' else 'open' end as status,
    {{ from_epoch('date') }} as created_at,
    {{ from_epoch(col(c, 'paid_at', 'bigint')) }} as paid_at
from {{ src }}
where not coalesce({{ col(c, 'deleted', 'boolean') }}, false)
