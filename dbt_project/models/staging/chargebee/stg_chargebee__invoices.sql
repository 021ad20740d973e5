-- Chargebee invoices: totals from minor units; the status in the neutral vocabulary
-- (pending draft, posted open: not yet due, payment_due past_due, not_paid uncollectible,
-- voided void). Chargebee has no credit invoices (credits are credit notes): every
-- invoice is a charge.
{% set src = source('chargebee', 'invoices') %}
{% set c = columns_of(src, required=false) %}
select
    'chargebee' as billing_system,
    cast(id as {{ type_text() }}) as invoice_id,
    cast(customer_id as {{ type_text() }}) as customer_id,
    cast({{ col(c, 'subscription_id') }} as {{ type_text() }}) as subscription_id,
    upper(currency_code) as currency,
    {{ minor_to_major('total', 'currency_code', 'chargebee') }} as total_local,
    case status
        when 'pending' then 'draft'
        when 'posted' then 'open'
        when 'payment_due' then 'past_due'
        when 'paid' then 'paid'
        when 'not_paid' then 'uncollectible'
        when 'voided' then 'void'
    end as status,
    'charge' as invoice_type,
    {{ from_epoch('date') }} as created_at,
    {{ from_epoch(col(c, 'paid_at', 'bigint')) }} as paid_at
from {{ raw_or_empty(src, ['id', 'customer_id', 'currency_code', 'total', 'status', 'date']) }}
where not coalesce({{ col(c, 'deleted', 'boolean') }}, false)
